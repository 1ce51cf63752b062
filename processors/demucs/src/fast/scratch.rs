//! Per-thread pooled scratch buffers for the kernels' column buffers and transformed blocks.

thread_local! {
    /// Buffers handed back by [`Reused`], kept for the next call on this thread.
    static POOL: std::cell::RefCell<Vec<Vec<f32>>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// At most this many buffers wait in a thread's pool (the largest kernels use three at once).
const POOL_SIZE: usize = 4;

/// A scratch buffer from this thread's pool: the kernels' column buffers and transformed
/// blocks (8–16 MB each, every call) are overwritten before they are read, so they are reused
/// instead of being allocated and zeroed again. Its contents start out arbitrary.
pub(crate) struct Reused {
    buf: Vec<f32>,
    len: usize,
}

impl Reused {
    pub(crate) fn new(len: usize) -> Self {
        if len == 0 {
            // An unused buffer (a kernel path that needs none) leaves the pool alone.
            return Self {
                buf: Vec::new(),
                len,
            };
        }
        let mut buf = POOL
            .with(|p| {
                let mut p = p.borrow_mut();
                // The largest pooled buffer, so that big requests rarely grow one.
                let best = (0..p.len()).max_by_key(|&i| p[i].len())?;
                Some(p.swap_remove(best))
            })
            .unwrap_or_default();
        if buf.len() < len {
            buf.resize(len, 0.0);
        }
        Self { buf, len }
    }
}

impl std::ops::Deref for Reused {
    type Target = [f32];
    fn deref(&self) -> &[f32] {
        &self.buf[..self.len]
    }
}

impl std::ops::DerefMut for Reused {
    fn deref_mut(&mut self) -> &mut [f32] {
        &mut self.buf[..self.len]
    }
}

impl Drop for Reused {
    fn drop(&mut self) {
        let buf = std::mem::take(&mut self.buf);
        if buf.capacity() == 0 {
            return;
        }
        // During thread exit the pool may already be gone; the buffer is then just freed.
        let _ = POOL.try_with(|p| {
            let mut p = p.borrow_mut();
            if p.len() < POOL_SIZE {
                p.push(buf);
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reused_buffers_have_the_length_asked_for_and_are_recycled() {
        let mut a = Reused::new(100);
        a.fill(1.0);
        let ptr = a.as_ptr();
        drop(a);
        // The same allocation comes back, shortened, with no zeroing pass.
        let b = Reused::new(50);
        assert_eq!((b.len(), b.as_ptr()), (50, ptr));
        assert!(b.iter().all(|v| *v == 1.0));
        // A second buffer while the first is out, grown from nothing.
        let c = Reused::new(200);
        assert_eq!(c.len(), 200);
        assert_ne!(c.as_ptr(), ptr);
        drop(b);
        // An empty request leaves the pooled buffer for the next real one.
        let none = Reused::new(0);
        assert_eq!(Reused::new(10).as_ptr(), ptr);
        drop(none);
    }
}
