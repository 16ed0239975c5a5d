//! The `ghauthz` command line: a thin shell over the library. `main` parses, hands the command
//! to its file under `commands/`, and returns an [`Outcome`], whose report prints the command's
//! JSON and exits with its code.

mod cli;
mod commands;
mod context;
mod input;
mod output;

use clap::Parser as _;
use clap::error::ErrorKind;

use crate::cli::Cli;
use crate::output::{Exit, Outcome, usage_message};

fn main() -> Outcome {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) => {
            return Outcome::text(Exit::Done, e.to_string());
        }
        Err(e) => {
            // Never clap's own message: it repeats what was typed, which may be a token.
            return Outcome::error(Exit::Usage, "usage", usage_message(&e));
        }
    };
    match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt.block_on(commands::run(cli)),
        Err(e) => Outcome::error(Exit::Unavailable, "runtime", e),
    }
}
