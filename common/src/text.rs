//! Quoting values that may be large in messages and tables.

/// `text` cut to at most `max` characters, the last of them `…` when cut:
/// how a message or a table cell shows a value that may be large.
pub fn abbreviated(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_string();
    }
    let kept: String = text.chars().take(max.saturating_sub(1)).collect();
    format!("{kept}…")
}
