//! The allocator's share of our memory: how many arenas glibc keeps, large blocks given back
//! when freed, and giving back the heap that start-up used and freed. A supervisor is expected
//! to idle small, and glibc keeps freed memory unless asked.
//!
//! All are no-ops on other C libraries. Called from the top (`main`, `app`) and from the node
//! after it takes over an environment; nothing here depends on the rest of the crate.

/// Set glibc's allocator for a long-running supervisor; call before any other thread runs.
///
/// - Arenas: glibc gives each thread that allocates its own arena (up to 8 per core), and each
///   keeps its freed memory. A supervisor allocates little and runs a dozen threads; two arenas
///   keep its idle memory down (~0.5 MB measured) without making the threads wait on one lock.
/// - Large blocks: glibc serves blocks of 128 KiB and more with their own mapping, returned at
///   `free`, but raises that threshold to the size of each such block freed, up to 32 MiB. After
///   the first large transient buffers (a batch of WAL frames, a zstd context, 1 MiB read
///   buffers) every later one then comes from the heap, and the heap keeps the peak: 5-6 MB of
///   the memory held with 1,000 processes (docs/BENCHMARKS.md). A fixed threshold of 1 MiB gives
///   those back each time; smaller blocks, such as the 300 kB answer of `GET /processes` with
///   1,000 processes, stay on the heap. A fixed threshold also fixes the one below which the
///   heap's free top is kept rather than trimmed, at 128 KiB: so it is set too, to 2 MiB (the
///   pair glibc itself would pick), or that answer would grow and shrink the heap at every
///   request (a fifth of the endpoint's throughput, measured).
///
/// `MALLOC_ARENA_MAX`, `MALLOC_MMAP_THRESHOLD_`, `MALLOC_TRIM_THRESHOLD_` or `GLIBC_TUNABLES` in
/// the environment still win.
pub fn tune_malloc() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        let tunables = std::env::var("GLIBC_TUNABLES").unwrap_or_default();
        let set = |env: &str, tunable: &str| {
            std::env::var_os(env).is_some() || tunables.contains(tunable)
        };
        // SAFETY: mallopt only sets an allocator parameter; called before any other thread runs.
        unsafe {
            if !set("MALLOC_ARENA_MAX", "glibc.malloc.arena_max") {
                libc::mallopt(libc::M_ARENA_MAX, 2);
            }
            if !set("MALLOC_MMAP_THRESHOLD_", "glibc.malloc.mmap_threshold") {
                libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD);
            }
            if !set("MALLOC_TRIM_THRESHOLD_", "glibc.malloc.trim_threshold") {
                libc::mallopt(libc::M_TRIM_THRESHOLD, 2 * MMAP_THRESHOLD);
            }
        }
    }
}

/// Blocks of this size and more get a mapping of their own (see [`tune_malloc`]).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const MMAP_THRESHOLD: libc::c_int = 1024 * 1024;

/// Give back to the system the heap that start-up used and freed (parsing the config, migrating
/// the database, building the API and its OpenAPI document; restoring the environment when this
/// node becomes the owner): glibc keeps freed memory in its arenas unless asked, and a
/// supervisor is expected to idle small.
pub fn release_startup_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only returns free heap pages to the kernel.
    unsafe {
        libc::malloc_trim(0);
    }
}
