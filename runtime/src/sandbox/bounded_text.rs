//! A `string` returned by a guest, copied out of its memory only when it
//! fits the call's output limit.
//!
//! Lifting a `string` copies it into the host whole; a guest returning
//! 100 MiB would cost the host 100 MiB before any limit could be checked.
//! wasmtime frees the guest's copy (post-return) as soon as the result is
//! lifted, so the check cannot wait until after the call either: it happens
//! during the lift, where the string's length is known before a byte is
//! copied. The limit of the call being lifted is a Tokio task-local, set by
//! [`with_output_limit`] around the call.
//!
//! This implements wasmtime's `Lift` by hand, through the same hidden
//! items its derive macros use (`__internal`); the layout read here (a
//! pointer and a length, 32 bits each) is the canonical ABI's for
//! `string` in a 32-bit memory.

use wasmtime::ValRaw;
use wasmtime::component::__internal::{CanonicalAbiInfo, InstanceType, InterfaceType, LiftContext};
use wasmtime::component::{ComponentType, Lift};

tokio::task_local! {
    static OUTPUT_LIMIT: u64;
}

/// Run `future` (a guest call) with strings lifted from it bounded by
/// `limit` bytes.
pub async fn with_output_limit<F: Future>(limit: u64, future: F) -> F::Output {
    OUTPUT_LIMIT.scope(limit, future).await
}

/// Bytes of an over-long string still copied, so an error message keeps
/// its beginning.
const PREFIX_BYTES: u32 = 4096;

/// A guest `string`, or the beginning and length of one that was over the
/// limit and left in guest memory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BoundedText {
    Text(String),
    TooLarge {
        /// Length in code units (bytes for UTF-8 guests).
        length: usize,
        /// Up to [`PREFIX_BYTES`] from its start.
        prefix: String,
    },
}

impl BoundedText {
    fn over_limit(length: u32) -> bool {
        let limit = OUTPUT_LIMIT.try_with(|limit| *limit).unwrap_or(u64::MAX);
        u64::from(length) > limit
    }

    /// The first bytes of the string at `pointer`, cut where the encoding
    /// allows (a cut inside a character fails validation: try shorter).
    fn prefix(
        cx: &mut LiftContext<'_>,
        ty: InterfaceType,
        pointer: [u8; 4],
        length: u32,
    ) -> String {
        // The top bit tags Latin-1/UTF-16 strings; their prefix is not worth
        // decoding here.
        if length & (1 << 31) != 0 {
            return String::new();
        }
        for cut in (PREFIX_BYTES.saturating_sub(3)..=PREFIX_BYTES).rev() {
            let mut pair = [0u8; 8];
            pair[..4].copy_from_slice(&pointer);
            pair[4..].copy_from_slice(&cut.min(length).to_le_bytes());
            if let Ok(prefix) = String::linear_lift_from_memory(cx, ty, &pair) {
                return prefix;
            }
        }
        String::new()
    }
}

// SAFETY: the same representation as `str` (a pointer pair), checked
// against the component's type exactly as `str` is.
unsafe impl ComponentType for BoundedText {
    type Lower = [ValRaw; 2];

    const ABI: CanonicalAbiInfo = CanonicalAbiInfo::POINTER_PAIR;

    fn typecheck(ty: &InterfaceType, types: &InstanceType<'_>) -> wasmtime::Result<()> {
        <str as ComponentType>::typecheck(ty, types)
    }
}

// SAFETY: reads only the length of the pointer pair itself, then defers to
// `String`'s lift, which bounds-checks and validates the string.
unsafe impl Lift for BoundedText {
    fn linear_lift_from_flat(
        cx: &mut LiftContext<'_>,
        ty: InterfaceType,
        src: &Self::Lower,
    ) -> wasmtime::Result<Self> {
        let (pointer, length) = (src[0].get_u32(), src[1].get_u32());
        if Self::over_limit(length) {
            return Ok(Self::TooLarge {
                length: length as usize,
                prefix: Self::prefix(cx, ty, pointer.to_le_bytes(), length),
            });
        }
        String::linear_lift_from_flat(cx, ty, src).map(Self::Text)
    }

    fn linear_lift_from_memory(
        cx: &mut LiftContext<'_>,
        ty: InterfaceType,
        bytes: &[u8],
    ) -> wasmtime::Result<Self> {
        let word = |range: std::ops::Range<usize>| {
            bytes
                .get(range)
                .and_then(|b| <[u8; 4]>::try_from(b).ok())
                .ok_or_else(|| wasmtime::Error::msg("a string's pointer pair is cut short"))
        };
        let (pointer, length) = (word(0..4)?, u32::from_le_bytes(word(4..8)?));
        if Self::over_limit(length) {
            return Ok(Self::TooLarge {
                length: length as usize,
                prefix: Self::prefix(cx, ty, pointer, length),
            });
        }
        String::linear_lift_from_memory(cx, ty, bytes).map(Self::Text)
    }
}
