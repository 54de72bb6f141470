//! Empty: enables the library target so `blocker` can depend on this crate and be rebuilt
//! when it changes (see aya-build).
#![no_std]
