//! A linear check of how deeply a spec's text nests, before the YAML parser
//! reads it: the parser takes time growing with the square of the depth of
//! flow collections (`[[[[...`), so a 100 KB document nested 50,000 deep
//! held a coordinator for seconds.

use super::SpecError;

/// The deepest nesting a spec may have. Job specs are a few levels deep;
/// the YAML reader refuses more than 128 anyway, after reading the text.
pub const MAX_DEPTH: usize = 64;

/// Refuses `text` when its collections nest deeper than [`MAX_DEPTH`]:
/// flow collections (`[`, `{`) and block sequences opened on one line
/// (`- - -`). Quoted strings and comments are skipped. Linear in the text.
pub fn check_depth(text: &str) -> Result<(), SpecError> {
    let mut flow = 0usize;
    let (mut line, mut column) = (1usize, 0usize);
    // Block sequence indicators at the start of the current line.
    let mut dashes = 0usize;
    let mut line_start = true;
    let mut chars = text.chars().peekable();
    let too_deep = |line: usize, column: usize| {
        Err(SpecError::Syntax(format!(
            "the spec nests deeper than {MAX_DEPTH} levels at line {line} column {column}; \
             a job spec is a few levels deep"
        )))
    };
    let mut previous = '\n';
    while let Some(c) = chars.next() {
        column += 1;
        match c {
            '\n' => {
                line += 1;
                column = 0;
                dashes = 0;
                line_start = true;
                previous = c;
                continue;
            }
            '"' | '\'' => {
                // Skipped to the closing quote; `\"` escapes in double
                // quotes, `''` in single ones is read as a close and an open.
                let quote = c;
                while let Some(q) = chars.next() {
                    column += 1;
                    if q == '\n' {
                        line += 1;
                        column = 0;
                    } else if quote == '"' && q == '\\' {
                        chars.next();
                        column += 1;
                    } else if q == quote {
                        break;
                    }
                }
                line_start = false;
            }
            '#' if previous.is_whitespace() => {
                for q in chars.by_ref() {
                    if q == '\n' {
                        line += 1;
                        column = 0;
                        dashes = 0;
                        line_start = true;
                        break;
                    }
                }
                previous = '\n';
                continue;
            }
            '[' | '{' => {
                flow += 1;
                line_start = false;
                if flow + dashes > MAX_DEPTH {
                    return too_deep(line, column);
                }
            }
            ']' | '}' => {
                flow = flow.saturating_sub(1);
                line_start = false;
            }
            '-' if line_start && chars.peek().is_none_or(|n| n.is_whitespace()) => {
                dashes += 1;
                if flow + dashes > MAX_DEPTH {
                    return too_deep(line, column);
                }
            }
            c if c.is_whitespace() => {}
            _ => line_start = false,
        }
        previous = c;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_nested_a_few_levels_pass() {
        let spec = "name: j\nsource: { kafka: { brokers: \"b:9092\", topic: t } }\n\
                    transforms:\n  - remap: '.a = [[1, 2], {\"b\": [3]}]'\n  - key_by: [k]\n\
                    # a comment with [[[[ brackets\nsink: { kafka: { brokers: b, topic: \"[o]\" } }\n";
        assert!(check_depth(spec).is_ok());
        assert!(check_depth(&format!("a: {}1{}", "[".repeat(64), "]".repeat(64))).is_ok());
    }

    #[test]
    fn deep_flow_collections_are_refused_with_where() {
        let deep = format!("a: {}{}", "[".repeat(100_000), "]".repeat(100_000));
        let e = check_depth(&deep).expect_err("too deep").to_string();
        assert!(
            e.contains("deeper than 64 levels at line 1 column 68"),
            "{e}"
        );
        let objects = format!("{}1{}", "{\"a\":".repeat(65), "}".repeat(65));
        assert!(check_depth(&objects).is_err());
    }

    #[test]
    fn deep_block_sequences_on_one_line_are_refused() {
        assert!(check_depth(&format!("{}x\n", "- ".repeat(65))).is_err());
        assert!(check_depth(&format!("{}x\n", "- ".repeat(10))).is_ok());
    }

    #[test]
    fn brackets_in_quotes_and_comments_do_not_count() {
        let quoted = format!("a: \"{}\"\nb: '{}'\n", "[".repeat(1000), "{".repeat(1000));
        assert!(check_depth(&quoted).is_ok());
        let commented = format!("a: 1 # {}\n", "[".repeat(1000));
        assert!(check_depth(&commented).is_ok());
        let escaped = format!("a: \"\\\"{}\"\n", "[".repeat(1000));
        assert!(check_depth(&escaped).is_ok());
    }
}
