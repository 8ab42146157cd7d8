//! Release builds of the `state-manager` binary lay out first, side by side, the functions that run
//! at start-up, while idle and for common requests (`build/symbol-order.txt`, recorded by
//! `build/record-symbol-order.py`). The kernel maps code 64 kB around each page it faults in, so
//! scattered start-up code kept most of the 11 MB of text resident; packed, it keeps about its
//! own size. Only with LLD, the linker rustc uses for x86_64 Linux; `STATE_MANAGER_SYMBOL_ORDER=off`
//! turns it off (e.g. with another linker).

use std::env;
use std::path::Path;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=build/symbol-order.txt");
    println!("cargo:rerun-if-env-changed=STATE_MANAGER_SYMBOL_ORDER");
    let var = |k: &str| env::var(k).unwrap_or_default();
    let lld_by_default = var("TARGET") == "x86_64-unknown-linux-gnu";
    let wanted = var("PROFILE") == "release" && var("STATE_MANAGER_SYMBOL_ORDER") != "off";
    let order = Path::new(&var("CARGO_MANIFEST_DIR")).join("build/symbol-order.txt");
    if lld_by_default && wanted && order.exists() {
        println!(
            "cargo:rustc-link-arg-bins=-Wl,--symbol-ordering-file={}",
            order.display()
        );
        // Names of functions that a later dependency or toolchain no longer has are skipped.
        println!("cargo:rustc-link-arg-bins=-Wl,--no-warn-symbol-ordering");
    }
}
