//! Runnable examples of esrs.
