//! Run-time dispatch of the element-wise loops to the x86-64 vector extensions the CPU has.
//! The crate is built for baseline x86-64, where these loops would be SSE2 and scalar `exp`;
//! [`simd!`] compiles a loop three times, for AVX-512, for AVX2+FMA and as is, and calls the
//! widest the CPU supports. On other architectures it is the plain function.

/// Defines `fn $name($args)` running `$body` compiled for AVX-512 or else AVX2+FMA when the
/// CPU has them, else as is.
macro_rules! simd {
    ($vis:vis $name:ident, ($($arg:ident: $ty:ty),*), $body:block) => {
        $vis fn $name($($arg: $ty),*) {
            #[inline(always)]
            fn body($($arg: $ty),*) $body
            // This module's `unsafe`, expanded where a loop is defined; `$body` (the
            // caller's code) stays outside the allowance.
            #[cfg(target_arch = "x86_64")]
            #[allow(unsafe_code)]
            {
                #[target_feature(enable = "avx512f,avx512dq,avx512vl,avx2,fma")]
                unsafe fn widest($($arg: $ty),*) { body($($arg),*) }
                if std::is_x86_feature_detected!("avx512f") && std::is_x86_feature_detected!("avx512dq") && std::is_x86_feature_detected!("avx512vl") {
                    // SAFETY: `widest` only needs the target features, just detected; the body
                    // is safe code.
                    return unsafe { widest($($arg),*) };
                }
                #[target_feature(enable = "avx2,fma")]
                unsafe fn wide($($arg: $ty),*) { body($($arg),*) }
                if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
                    // SAFETY: as above, for AVX2 and FMA.
                    return unsafe { wide($($arg),*) };
                }
            }
            body($($arg),*)
        }
    };
}
pub(crate) use simd;
