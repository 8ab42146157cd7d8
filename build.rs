//! Release builds of the `state-manager` binary are linked to keep little of it resident.
//!
//! - Code layout: the functions that run at start-up, while idle and for common requests come
//!   first, side by side (`build/symbol-order.txt`, recorded by `build/record-symbol-order.py`).
//!   The kernel maps code 64 kB around each page it faults in, so scattered start-up code kept
//!   most of the 11 MB of text resident; packed, it keeps about its own size.
//!   `STATE_MANAGER_SYMBOL_ORDER=off` turns it off (e.g. with another linker).
//! - Packed relative relocations (`-z pack-relative-relocs`, DT_RELR): a position-independent
//!   executable lists every pointer the loader must adjust at start; as RELA entries that list
//!   is 0.9 MB, read in full by every start of the server and of its fence process, and kept
//!   resident by both. Packed, it is 16 kB. The loader must know the format (glibc 2.36 or
//!   later), so it is used only when the binary is built for the machine that builds it and that
//!   machine's glibc has it; `STATE_MANAGER_RELR=off` turns it off.
//!
//! Both only with LLD, the linker rustc uses for x86_64 Linux.

use std::env;
use std::path::Path;
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=build/symbol-order.txt");
    println!("cargo:rerun-if-env-changed=STATE_MANAGER_SYMBOL_ORDER");
    println!("cargo:rerun-if-env-changed=STATE_MANAGER_RELR");
    let var = |k: &str| env::var(k).unwrap_or_default();
    let lld_by_default = var("TARGET") == "x86_64-unknown-linux-gnu";
    let release = var("PROFILE") == "release";
    let order = Path::new(&var("CARGO_MANIFEST_DIR")).join("build/symbol-order.txt");
    if lld_by_default && release && var("STATE_MANAGER_SYMBOL_ORDER") != "off" && order.exists() {
        println!(
            "cargo:rustc-link-arg-bins=-Wl,--symbol-ordering-file={}",
            order.display()
        );
        // Names of functions that a later dependency or toolchain no longer has are skipped.
        println!("cargo:rustc-link-arg-bins=-Wl,--no-warn-symbol-ordering");
    }
    let native = var("HOST") == var("TARGET");
    if lld_by_default && release && native && var("STATE_MANAGER_RELR") != "off" && glibc_has_relr()
    {
        println!("cargo:rustc-link-arg-bins=-Wl,-z,pack-relative-relocs");
    }
}

/// Whether this machine's glibc (2.36 or later) loads DT_RELR relocations. The binary then also
/// names the `GLIBC_ABI_DT_RELR` version, so an older loader refuses it with a clear message
/// rather than starting it wrongly relocated.
fn glibc_has_relr() -> bool {
    let Ok(out) = Command::new("getconf").arg("GNU_LIBC_VERSION").output() else {
        return false;
    };
    let text = String::from_utf8_lossy(&out.stdout);
    let Some(version) = text.trim().strip_prefix("glibc ") else {
        return false;
    };
    let mut parts = version.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
    let (major, minor) = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    (major, minor) >= (2, 36)
}
