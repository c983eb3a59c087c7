//! Who may own the socket's folder and who may answer on the socket.
//!
//! Shared by the daemon (before it binds, creates the `.lock` file or removes
//! a stale socket) and by the CLI (before it believes an answer): another
//! user who can write to the socket's folder, or who answers on the socket,
//! could fake `lock` replies and let a command run "under the lock" with no
//! lock at all.

use std::fs::Metadata;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

/// Why a socket folder or a socket's server cannot be trusted.
#[derive(Debug, thiserror::Error)]
pub enum TrustError {
    /// The folder belongs to another user.
    #[error(
        "the socket folder {} belongs to uid {owner}, not to you (uid {me}) or root; \
         another user could replace the socket (remove the folder, or choose another socket path)",
        dir.display()
    )]
    ForeignDir {
        /// The folder.
        dir: PathBuf,
        /// Its owner.
        owner: u32,
        /// Our uid.
        me: u32,
    },
    /// The folder is writable by group or others and has no sticky bit.
    #[error(
        "the socket folder {} is writable by other users (mode {mode:04o}); \
         another user could replace the socket (run `chmod go-w {}`, or choose another socket path)",
        dir.display(),
        dir.display()
    )]
    WritableDir {
        /// The folder.
        dir: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// The socket's parent is not a folder.
    #[error("the socket folder {} is not a directory", dir.display())]
    NotADir {
        /// The path.
        dir: PathBuf,
    },
    /// The folder could not be examined.
    #[error("cannot examine the socket folder {}: {source}", dir.display())]
    Io {
        /// The folder.
        dir: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },
}

/// This process's real uid.
pub fn my_uid() -> u32 {
    // SAFETY: getuid has no preconditions and cannot fail.
    unsafe { libc::getuid() }
}

/// The folder a socket path lives in (`.` for a bare file name).
pub fn socket_dir(socket: &Path) -> &Path {
    match socket.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    }
}

/// Checks that only we (or root) can add, remove or rename entries in `dir`:
/// owned by us or root, and not writable by group or others unless sticky
/// (like `/tmp`, where nobody may remove or rename another's files).
pub fn check_dir(dir: &Path) -> Result<(), TrustError> {
    let meta = std::fs::metadata(dir).map_err(|source| TrustError::Io {
        dir: dir.to_path_buf(),
        source,
    })?;
    check_dir_meta(dir, &meta, my_uid())
}

fn check_dir_meta(dir: &Path, meta: &Metadata, me: u32) -> Result<(), TrustError> {
    if !meta.is_dir() {
        return Err(TrustError::NotADir {
            dir: dir.to_path_buf(),
        });
    }
    check_dir_bits(dir, meta.uid(), meta.mode(), me)
}

/// The rule of [`check_dir`] on an owner and a mode.
fn check_dir_bits(dir: &Path, owner: u32, mode: u32, me: u32) -> Result<(), TrustError> {
    if owner != me && owner != 0 {
        return Err(TrustError::ForeignDir {
            dir: dir.to_path_buf(),
            owner,
            me,
        });
    }
    let sticky = mode & 0o1000 != 0;
    if mode & 0o022 != 0 && !sticky {
        return Err(TrustError::WritableDir {
            dir: dir.to_path_buf(),
            mode: mode & 0o7777,
        });
    }
    Ok(())
}

/// Whether a server running as `uid` may be believed by us: it is us, or root
/// (who can read and write our files anyway, so cannot gain by lying).
pub fn trusted_server(uid: u32) -> bool {
    uid == my_uid() || uid == 0
}

/// The uid of the process at the other end of a connected Unix socket
/// (SO_PEERCRED: for a client, the server's credentials when it listened).
pub fn peer_uid(stream: &impl AsRawFd) -> io::Result<u32> {
    let mut cred = libc::ucred {
        pid: 0,
        uid: 0,
        gid: 0,
    };
    let mut len = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
    // SAFETY: the fd is a live socket; cred and len are valid out-parameters
    // of the size passed.
    let rc = unsafe {
        libc::getsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            (&mut cred as *mut libc::ucred).cast(),
            &mut len,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(cred.uid)
}

/// A file type in words, for messages ("a regular file", "a symbolic link").
pub fn describe_type(meta: &Metadata) -> &'static str {
    let t = meta.file_type();
    if t.is_symlink() {
        "a symbolic link"
    } else if t.is_dir() {
        "a directory"
    } else if t.is_file() {
        "a regular file"
    } else if t.is_socket() {
        "a socket"
    } else if t.is_fifo() {
        "a named pipe"
    } else if t.is_block_device() || t.is_char_device() {
        "a device"
    } else {
        "an unknown kind of file"
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn dir_rule() {
        let d = Path::new("/x");
        let cases: [(u32, u32, bool); 8] = [
            (7, 0o700, true),
            (7, 0o755, true),
            (0, 0o755, true),
            (0, 0o1777, true),
            (7, 0o1777, true),
            (7, 0o777, false),
            (7, 0o770, false),
            (9, 0o700, false),
        ];
        for (owner, mode, ok) in cases {
            assert_eq!(
                check_dir_bits(d, owner, mode, 7).is_ok(),
                ok,
                "owner {owner} mode {mode:o}"
            );
        }
        let foreign = check_dir_bits(d, 9, 0o777, 7).unwrap_err().to_string();
        assert!(
            foreign.contains("uid 9") && foreign.contains("/x"),
            "{foreign}"
        );
    }

    #[test]
    fn peer_of_a_socketpair_is_us() {
        let (a, _b) = std::os::unix::net::UnixStream::pair().unwrap();
        assert_eq!(peer_uid(&a).unwrap(), my_uid());
    }
}
