//! Running a benchmark or a profile the way the demucs worker runs.

/// The demucs worker's allocator settings (`roar_processors::alloc`: one arena, blocks up to
/// 1 GiB from the heap, no trimming below 1 GiB free) as glibc tunables.
pub const WORKER_ALLOCATOR_TUNABLES: &str = "glibc.malloc.arena_max=1:\
                                             glibc.malloc.mmap_threshold=1073741824:\
                                             glibc.malloc.trim_threshold=1073741824";

/// Returns in a process that has the worker's allocator settings: glibc reads its tunables only
/// when a process starts, so without them this program runs itself again with them set and
/// exits with that run's status. A `GLIBC_TUNABLES` the caller set is left as it is.
pub fn with_worker_allocator() {
    if std::env::var_os("GLIBC_TUNABLES").is_some() {
        return;
    }
    let me = std::env::current_exe().expect("the program's own path");
    let status = std::process::Command::new(me)
        .args(std::env::args_os().skip(1))
        .env("GLIBC_TUNABLES", WORKER_ALLOCATOR_TUNABLES)
        .status()
        .expect("the program run again with the worker's allocator settings");
    std::process::exit(status.code().unwrap_or(1));
}
