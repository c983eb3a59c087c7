//! systemd readiness notifications (`READY=1`, `RELOADING=1`, `STOPPING=1`).
//!
//! Sent on a non-blocking datagram socket: a blocking send to a full notify
//! queue once froze a whole tokio runtime for 12 s (tech-findings §7), so a
//! message that cannot go out at once is dropped with a debug log instead.

use std::io;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};

/// Sends `state` (newline-separated `KEY=VALUE` pairs) to `$NOTIFY_SOCKET`.
/// Does nothing when the variable is unset (not run by systemd).
pub fn notify(state: &str) {
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    if let Err(e) = send(path.as_encoded_bytes(), state) {
        tracing::debug!(error = %e, state, "could not notify systemd");
    }
}

fn send(path: &[u8], state: &str) -> io::Result<()> {
    let addr = match path.split_first() {
        Some((b'@', name)) => SocketAddr::from_abstract_name(name)?,
        Some(_) => SocketAddr::from_pathname(std::ffi::OsStr::from_bytes(path))?,
        None => {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "empty NOTIFY_SOCKET",
            ))
        }
    };
    let socket = UnixDatagram::unbound()?;
    socket.set_nonblocking(true)?;
    socket.send_to_addr(state.as_bytes(), &addr)?;
    Ok(())
}

/// `RELOADING=1` with the monotonic timestamp systemd expects alongside it.
pub fn reloading_message() -> String {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime only writes into the timespec we pass.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    let usec = (ts.tv_sec as u64) * 1_000_000 + (ts.tv_nsec as u64) / 1_000;
    format!("RELOADING=1\nMONOTONIC_USEC={usec}")
}
