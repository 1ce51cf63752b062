//! glibc allocator settings for a worker process that runs HTDemucs. Process-wide settings
//! belong to the process, not to the model library (roar-demucs keeps its `unsafe` to its
//! kernels); the demucs bench gives glibc the same settings as tunables.
//!
//! A forward pass allocates and frees tensors of tens to hundreds of megabytes many times.
//! By default glibc serves such blocks with fresh `mmap`s and unmaps them on free, so every
//! pass pays the kernel to fault in and zero the same memory again (page faults and page
//! clearing were ~10 % of a segment's profile). Keeping large blocks in one heap that is not
//! trimmed lets freed memory be reused as is: a 60 s track went from 46.8 s to 39.5 s on the
//! benchmark machine with a lower peak RSS (docs/benchmarks-demucs.md). The cost is that the
//! process keeps its high-water mark (one segment's working set plus the track) after a job
//! instead of returning it, which suits a worker that does this all day.

/// Blocks up to this size come from the heap instead of their own `mmap`.
const MMAP_THRESHOLD: i32 = 1 << 30;
/// The heap is not shrunk until this much is free at its top.
const TRIM_THRESHOLD: i32 = 1 << 30;

/// Applies the settings process-wide; call once at start-up, before the model is loaded.
/// Returns whether they took effect (false on allocators other than glibc's).
pub fn tune_allocator() -> bool {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: mallopt reads nothing but its two integer arguments and only changes
        // allocator parameters, which glibc allows at any time, from any thread. One arena:
        // inference runs on a worker thread, and a thread arena cannot hold blocks larger than
        // its 64 MiB heaps, so those would be mmap'd again.
        unsafe {
            libc::mallopt(libc::M_ARENA_MAX, 1) == 1
                && libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1
                && libc::mallopt(libc::M_TRIM_THRESHOLD, TRIM_THRESHOLD) == 1
        }
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        false
    }
}

#[cfg(all(test, target_os = "linux", target_env = "gnu"))]
mod tests {
    #[test]
    fn glibc_accepts_the_settings_and_large_blocks_still_work() {
        assert!(super::tune_allocator());
        // A block above the old 32 MiB mmap ceiling, written, freed and allocated again.
        for round in 0..2u8 {
            let mut v = vec![round; 64 << 20];
            v[(64 << 20) - 1] = 7;
            assert_eq!(
                v.iter().map(|&b| b as usize).sum::<usize>(),
                7 + round as usize * ((64 << 20) - 1)
            );
        }
    }
}
