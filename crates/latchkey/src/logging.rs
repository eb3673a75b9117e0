//! Structured logs, as text for people or JSON for collectors.

use tracing_subscriber::{EnvFilter, fmt};

use crate::{cli::LogFormat, error::Error};

pub fn init(format: LogFormat, filter: &str) -> Result<(), Error> {
    let filter = EnvFilter::try_new(filter)
        .map_err(|e| Error::Usage(format!("--log-level {filter:?}: {e}")))?;
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stdout());
    let builder = fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stdout)
        .with_ansi(ansi);
    let result = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .try_init(),
    };
    result.map_err(|e| Error::Logging(e.to_string()))
}
