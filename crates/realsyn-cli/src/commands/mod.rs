pub mod bench;
pub mod convert;
pub mod embed;
pub mod tokenize;
