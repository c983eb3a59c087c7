//! Log output: tracing to stderr, journal-friendly under systemd.
//!
//! When `JOURNAL_STREAM` is set (as systemd does), lines carry no timestamp
//! (the journal adds its own) and no colours; when it names stderr itself,
//! they also start with a `<N>` syslog priority so `journalctl -p warning`
//! works.

use std::fmt;
use std::io::IsTerminal;

use tracing::{Event, Level, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::EnvFilter;

/// Installs the global subscriber. `level` (from `--log-level`, `-v`, `-q`)
/// wins over `RUST_LOG`, which wins over the default `info`.
pub fn init(level: Option<&str>) {
    let filter = match level {
        Some(level) => EnvFilter::try_new(level),
        None => EnvFilter::try_from_default_env().or_else(|_| EnvFilter::try_new("info")),
    }
    .unwrap_or_else(|_| EnvFilter::new("info"));
    let journal = stderr_is_journal();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let announced = std::env::var_os("JOURNAL_STREAM").is_some_and(|v| !v.is_empty());
    let result = if journal {
        // No ANSI in the journal: the field formatter colours by default.
        builder
            .with_ansi(false)
            .event_format(JournalFormat)
            .try_init()
    } else if announced {
        // Under a service manager, but stderr is not that stream (redirected):
        // still no timestamps (the manager stamps lines) and no colours.
        builder
            .with_ansi(false)
            .with_target(false)
            .without_time()
            .try_init()
    } else {
        builder
            .with_ansi(std::io::stderr().is_terminal())
            .with_target(false)
            .try_init()
    };
    // A second init (tests) keeps the first subscriber; nothing to report.
    let _ = result;
}

/// Whether stderr is the journal stream systemd announced in `JOURNAL_STREAM`
/// (`<device>:<inode>`). A shell that merely inherited the variable keeps the
/// normal format, so journal-style lines never end up in a terminal.
fn stderr_is_journal() -> bool {
    use std::os::fd::AsFd;
    use std::os::unix::fs::MetadataExt;
    let Some(value) = std::env::var_os("JOURNAL_STREAM") else {
        return false;
    };
    let Some((dev, ino)) = value.to_str().and_then(|v| v.split_once(':')) else {
        return false;
    };
    let (Ok(dev), Ok(ino)) = (dev.parse::<u64>(), ino.parse::<u64>()) else {
        return false;
    };
    let Ok(fd) = std::io::stderr().as_fd().try_clone_to_owned() else {
        return false;
    };
    std::fs::File::from(fd)
        .metadata()
        .is_ok_and(|m| m.dev() == dev && m.ino() == ino)
}

/// `<priority>message key=value` lines, as sd-daemon(3) describes.
struct JournalFormat;

impl<S, N> FormatEvent<S, N> for JournalFormat
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let priority = match *event.metadata().level() {
            Level::ERROR => 3,
            Level::WARN => 4,
            Level::INFO => 6,
            Level::DEBUG | Level::TRACE => 7,
        };
        write!(writer, "<{priority}>")?;
        ctx.field_format().format_fields(writer.by_ref(), event)?;
        writeln!(writer)
    }
}
