//! Reading a new password on the command line (`vigil user create`): a hidden, confirmed prompt on a terminal,
//! or exactly one line from stdin when stdin is a pipe (scripts, containers), so no password lands in argv or in
//! shell history.

use std::io::{BufRead, IsTerminal};

#[derive(Debug, thiserror::Error)]
pub enum PromptError {
    #[error("reading the password: {0}")]
    Io(#[from] std::io::Error),
    #[error("the passwords do not match")]
    Mismatch,
    #[error("no password given (expected one line on stdin)")]
    Empty,
}

/// Prompts twice (without echo) on a terminal; otherwise reads one line from stdin.
pub fn read_new_password() -> Result<String, PromptError> {
    if std::io::stdin().is_terminal() {
        let first = rpassword::prompt_password("Password: ")?;
        let again = rpassword::prompt_password("Repeat password: ")?;
        if first != again {
            return Err(PromptError::Mismatch);
        }
        non_empty(first)
    } else {
        read_line(&mut std::io::stdin().lock())
    }
}

/// The first line of `input` without its line ending (spaces inside the password are kept).
pub fn read_line(input: &mut impl BufRead) -> Result<String, PromptError> {
    let mut line = String::new();
    input.read_line(&mut line)?;
    non_empty(line.trim_end_matches(['\r', '\n']).to_owned())
}

fn non_empty(p: String) -> Result<String, PromptError> {
    if p.is_empty() {
        Err(PromptError::Empty)
    } else {
        Ok(p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_without_its_ending() {
        let mut input = &b"S3cret pass!\r\nsecond line\n"[..];
        assert_eq!(read_line(&mut input).expect("line"), "S3cret pass!");
        assert!(matches!(
            read_line(&mut &b"\n"[..]),
            Err(PromptError::Empty)
        ));
        assert!(matches!(read_line(&mut &b""[..]), Err(PromptError::Empty)));
    }
}
