//! Writing to standard output. A reader that stops reading (`jobctl list |
//! head -1`) closes the pipe; jobctl then ends at once and quietly, with
//! status 141 as a process ended by SIGPIPE has in the shell, rather than
//! panicking as `println!` does.

use std::fmt;
use std::io::{ErrorKind, Write};

/// The exit status of a process ended by SIGPIPE (128 + 13), as shells show it.
const BROKEN_PIPE_STATUS: i32 = 141;

/// `println!` that ends jobctl quietly once standard output is closed.
macro_rules! say {
    () => {
        $crate::stdout::write(format_args!("\n"))
    };
    ($($arg:tt)*) => {
        $crate::stdout::write(format_args!("{}\n", format_args!($($arg)*)))
    };
}

/// `print!` that ends jobctl quietly once standard output is closed.
macro_rules! say_part {
    ($($arg:tt)*) => {
        $crate::stdout::write(format_args!($($arg)*))
    };
}

/// Writes `args` to standard output and flushes it (a `status --watch`
/// refresh shows at once). A closed pipe ends the process with status 141;
/// any other write error with status 1 and a message.
pub fn write(args: fmt::Arguments<'_>) {
    let mut out = std::io::stdout().lock();
    let written = out.write_fmt(args).and_then(|()| out.flush());
    match written {
        Ok(()) => {}
        Err(e) if e.kind() == ErrorKind::BrokenPipe => std::process::exit(BROKEN_PIPE_STATUS),
        Err(e) => {
            eprintln!("error: cannot write to standard output: {e}");
            std::process::exit(1)
        }
    }
}
