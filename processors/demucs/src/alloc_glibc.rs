//! The one call into glibc's allocator: `mallopt`, behind a safe function. Kept apart so that
//! [`crate::alloc`] is safe code and `unsafe` stays in the platform modules (as `*_x86` does
//! for the CPU's intrinsics).

/// Sets one arena, the mmap threshold and the trim threshold; whether glibc accepted all three.
pub(crate) fn set_large_block_heap(mmap_threshold: i32, trim_threshold: i32) -> bool {
    // SAFETY: mallopt reads nothing but its two integer arguments and only changes allocator
    // parameters, which glibc allows at any time, from any thread. One arena: inference runs
    // on a worker thread, and a thread arena cannot hold blocks larger than its 64 MiB heaps,
    // so those would be mmap'd again.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 1) == 1
            && libc::mallopt(libc::M_MMAP_THRESHOLD, mmap_threshold) == 1
            && libc::mallopt(libc::M_TRIM_THRESHOLD, trim_threshold) == 1
    }
}
