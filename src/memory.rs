//! The allocator's share of our memory: how many arenas glibc keeps, and giving back the heap
//! that start-up used and freed. A supervisor is expected to idle small, and glibc keeps freed
//! memory unless asked.
//!
//! Both are no-ops on other C libraries. Called from the top (`main`, `app`) and from the node
//! after it takes over an environment; nothing here depends on the rest of the crate.

/// glibc gives each thread that allocates its own arena (up to 8 per core), and each keeps its
/// freed memory. A supervisor allocates little and runs a dozen threads; two arenas keep its idle
/// memory down (~0.5 MB measured) without making the threads wait on one lock. An explicit
/// `MALLOC_ARENA_MAX` in the environment still wins. Call before any other thread runs.
pub fn limit_malloc_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    if std::env::var_os("MALLOC_ARENA_MAX").is_none() {
        // SAFETY: mallopt only sets an allocator parameter; called before any other thread runs.
        unsafe {
            libc::mallopt(libc::M_ARENA_MAX, 2);
        }
    }
}

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
