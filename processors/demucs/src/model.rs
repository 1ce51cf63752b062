//! The HTDemucs network (in progress).
pub struct HTDemucs {}
