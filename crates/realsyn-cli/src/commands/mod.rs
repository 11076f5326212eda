pub mod bench;
pub mod convert;
pub mod dataset;
pub mod embed;
pub mod eval;
pub mod init;
pub mod tokenize;
pub mod train;
