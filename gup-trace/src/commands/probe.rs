//! `gup-trace probe`: attach everything this kernel allows, print the capability report, exit.

use std::process::ExitCode;

use anyhow::Result;
use clap::Args;

use super::require_root;
use crate::{
    output,
    session::{Session, SessionConfig},
};

#[derive(Args, Debug)]
pub struct ProbeArgs {
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

pub async fn run(args: ProbeArgs) -> Result<ExitCode> {
    require_root("probe")?;
    let session = Session::start(&SessionConfig::default())?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&session.capabilities)?);
    } else {
        print!("{}", output::capabilities(&session.capabilities, true));
    }
    Ok(ExitCode::SUCCESS)
}
