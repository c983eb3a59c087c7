//! Surviving panics: naming them, and (in debug builds only) causing them
//! on purpose so that tests can prove a crash is survived.

use std::any::Any;
use std::path::PathBuf;

/// The text of a panic payload.
pub(crate) fn panic_message(payload: Box<dyn Any + Send>) -> String {
    match payload.downcast::<String>() {
        Ok(s) => *s,
        Err(payload) => match payload.downcast::<&'static str>() {
            Ok(s) => (*s).to_string(),
            Err(_) => "a panic".to_string(),
        },
    }
}

/// Debug builds only: `GITLOCKD_TEST_PANIC=PART:NAME` makes `PART` (`loop`:
/// a notebook's loop, `pump`: its watch thread) panic when a change names a
/// file called NAME. Release builds have no such switch.
pub(crate) fn test_panic<'a>(part: &str, paths: impl IntoIterator<Item = &'a PathBuf>) {
    #[cfg(debug_assertions)]
    if let Ok(spec) = std::env::var("GITLOCKD_TEST_PANIC") {
        let wanted = spec
            .strip_prefix(part)
            .and_then(|rest| rest.strip_prefix(':'));
        if let Some(name) = wanted {
            if paths
                .into_iter()
                .any(|p| p.file_name().is_some_and(|f| f == name))
            {
                panic!("GITLOCKD_TEST_PANIC={spec}");
            }
        }
    }
    #[cfg(not(debug_assertions))]
    let _ = (part, paths.into_iter());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn panic_payloads_become_text() {
        assert_eq!(panic_message(Box::new("static")), "static");
        assert_eq!(panic_message(Box::new(String::from("owned"))), "owned");
        assert_eq!(panic_message(Box::new(42)), "a panic");
    }
}
