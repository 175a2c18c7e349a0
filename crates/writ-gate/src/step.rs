//! The steps of a gate command: each gives its value, or the exit that ends
//! the command there (a denial), which [`proceed!`] returns from the caller.

use crate::Exit;

/// A step of a command: its value, or the exit that ends the command there.
pub(crate) type Step<T> = anyhow::Result<Result<T, Exit>>;

/// The value of a [`Step`], or, when the step ended the command, its exit
/// returned from the calling function (which returns `Result<Exit>`).
macro_rules! proceed {
    ($step:expr) => {
        match $step? {
            Ok(v) => v,
            Err(exit) => return Ok(exit),
        }
    };
}
pub(crate) use proceed;
