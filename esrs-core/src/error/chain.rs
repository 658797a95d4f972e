//! Showing an error with its causes.

use std::fmt;

/// Shows an error with its whole chain of causes, outermost first: `outer: cause: root`.
///
/// The errors of esrs say what went wrong at their own layer and hand out the cause through
/// [`source()`](std::error::Error::source), never both; `{}` of an [`Error`](crate::Error) therefore names
/// the failure without its cause. Wherever an error is shown to a person (a log line, a
/// failed test, the output of `main`), show it through this adapter:
///
/// ```
/// use esrs_core::error::ErrorChain;
///
/// let error = esrs_core::Error::Backend {
///     source: "the disk is full".into(),
/// };
/// assert_eq!(error.to_string(), "event store failure");
/// assert_eq!(
///     ErrorChain::new(&error).to_string(),
///     "event store failure: the disk is full"
/// );
/// // In a log line: tracing::warn!(error = %ErrorChain::new(&error), "…");
/// ```
///
/// An error of another library that prints its cause itself (as some do: `"…: {source}"`)
/// is shown once: a cause whose text the error before it already ends with is not repeated.
#[derive(Debug, Clone, Copy)]
pub struct ErrorChain<'a> {
    error: &'a (dyn std::error::Error + 'static),
}

impl<'a> ErrorChain<'a> {
    /// Shows `error` and its causes. A boxed error is passed as `&*boxed`.
    pub fn new(error: &'a (dyn std::error::Error + 'static)) -> Self {
        Self { error }
    }
}

impl fmt::Display for ErrorChain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut previous = self.error.to_string();
        f.write_str(&previous)?;
        let mut next = self.error.source();
        while let Some(error) = next {
            let text = error.to_string();
            // A cause that the error before it printed itself is not repeated.
            if !previous.ends_with(&text) {
                write!(f, ": {text}")?;
            }
            previous = text;
            next = error.source();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::ErrorChain;

    #[derive(Debug, thiserror::Error)]
    #[error("the root cause")]
    struct Root;

    #[derive(Debug, thiserror::Error)]
    #[error("the middle layer")]
    struct Middle(#[source] Root);

    #[derive(Debug, thiserror::Error)]
    #[error("the outer layer")]
    struct Outer(#[source] Middle);

    /// An error of another library that prints its cause and also hands it out through
    /// `source()`, as the errors of esrs do not.
    #[derive(Debug)]
    struct Chatty(Middle);

    impl std::fmt::Display for Chatty {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "a chatty layer: {}", self.0)
        }
    }

    impl std::error::Error for Chatty {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(&self.0)
        }
    }

    #[derive(Debug, thiserror::Error)]
    #[error("on top of a chatty one")]
    struct OnChatty(#[source] Chatty);

    #[test]
    fn an_error_without_a_source_is_shown_alone() {
        assert_eq!(ErrorChain::new(&Root).to_string(), "the root cause");
    }

    #[test]
    fn every_cause_is_shown_once_outermost_first() {
        assert_eq!(
            ErrorChain::new(&Outer(Middle(Root))).to_string(),
            "the outer layer: the middle layer: the root cause"
        );
    }

    #[test]
    fn a_cause_its_error_printed_already_is_not_repeated() {
        let chatty = OnChatty(Chatty(Middle(Root)));
        assert_eq!(
            ErrorChain::new(&chatty).to_string(),
            "on top of a chatty one: a chatty layer: the middle layer: the root cause"
        );
    }

    #[test]
    fn a_boxed_error_is_shown_through_its_box() {
        let boxed: crate::BoxError = Box::new(Outer(Middle(Root)));
        assert_eq!(
            ErrorChain::new(&*boxed).to_string(),
            "the outer layer: the middle layer: the root cause"
        );
    }
}
