pub mod bench;
pub mod convert;
pub mod embed;
pub mod init;
pub mod tokenize;
