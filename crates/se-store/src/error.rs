/// A storage operation that failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The data directory or database could not be opened or created.
    #[error("failed to open the store at {path}: {source}. Check that the directory exists and is writable, or choose another with --data-dir")]
    Open { path: String, source: rusqlite::Error },

    /// The data directory is a file or another non-directory entry.
    #[error("the data directory {path} is a file, not a directory. Choose another directory with --data-dir, or move the file away")]
    NotADirectory { path: String },

    /// The database schema is newer than this binary understands.
    #[error("the store at {path} has schema version {found}, but this binary supports up to {supported}; upgrade smart-energy")]
    SchemaTooNew { path: String, found: i64, supported: i64 },

    /// A unique value, such as a username, already exists.
    #[error("{what} already exists")]
    Conflict { what: String },

    /// A site, user or other referenced row does not exist.
    #[error("{what} not found")]
    NotFound { what: String },

    /// The request breaks a rule of the store, such as deleting the default site.
    #[error("{0}")]
    Invalid(String),

    /// The database engine failed; the operation may succeed if retried.
    #[error("database error during {operation}: {source}")]
    Database { operation: &'static str, source: rusqlite::Error },

    /// A stored value could not be read back, which means the database was
    /// changed outside Smart Energy.
    #[error("corrupt value in the store during {operation}: {detail}")]
    Corrupt { operation: &'static str, detail: String },

    /// The blocking storage task ended unexpectedly.
    #[error("storage worker failed: {0}")]
    Worker(String),
}
