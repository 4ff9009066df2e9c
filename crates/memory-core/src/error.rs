//! One error enum for the crate. Every message names the bad value.

/// Stable machine codes, mirrored by the binding as JS error `code`s.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    InvalidRequest,
    PayloadTooLarge,
    NotFound,
    Unavailable,
    StorageFull,
    Corrupt,
    Locked,
    Io,
    Internal,
}

impl ErrorCode {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::InvalidRequest => "invalid_request",
            ErrorCode::PayloadTooLarge => "payload_too_large",
            ErrorCode::NotFound => "not_found",
            ErrorCode::Unavailable => "unavailable",
            ErrorCode::StorageFull => "storage_full",
            ErrorCode::Corrupt => "corrupt",
            ErrorCode::Locked => "locked",
            ErrorCode::Io => "io",
            ErrorCode::Internal => "internal",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    InvalidRequest(String),
    #[error("{0}")]
    PayloadTooLarge(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Unavailable(String),
    #[error("storage full: {0}")]
    StorageFull(String),
    #[error("corrupt log {file} at offset {offset}: {reason}")]
    Corrupt { file: String, offset: u64, reason: String },
    #[error("{0}")]
    Locked(String),
    #[error("I/O error on {path}: {source}")]
    Io { path: String, #[source] source: std::io::Error },
    #[error("internal error: {0}")]
    Internal(String),
}

impl Error {
    pub fn code(&self) -> ErrorCode {
        match self {
            Error::InvalidRequest(_) => ErrorCode::InvalidRequest,
            Error::PayloadTooLarge(_) => ErrorCode::PayloadTooLarge,
            Error::NotFound(_) => ErrorCode::NotFound,
            Error::Unavailable(_) => ErrorCode::Unavailable,
            Error::StorageFull(_) => ErrorCode::StorageFull,
            Error::Corrupt { .. } => ErrorCode::Corrupt,
            Error::Locked(_) => ErrorCode::Locked,
            Error::Io { .. } => ErrorCode::Io,
            Error::Internal(_) => ErrorCode::Internal,
        }
    }

    pub fn invalid(msg: impl Into<String>) -> Self {
        Error::InvalidRequest(msg.into())
    }

    /// Wrap an I/O error, turning ENOSPC/EDQUOT into `StorageFull`.
    pub fn io(path: impl AsRef<std::path::Path>, source: std::io::Error) -> Self {
        let path = path.as_ref().display().to_string();
        match source.raw_os_error() {
            Some(28) | Some(122) => Error::StorageFull(format!("{path}: {source}")),
            _ => Error::Io { path, source },
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
