//! A tower's forward pass cut at its residual blocks: the stem (embeddings up to the
//! first block), one stage per block, and the head (pooling, final norm, projection).
//!
//! Every CLIP tower runs its forward pass through its stages, so the one cut that
//! per-block activation checkpointing (open_clip's `--grad-checkpointing`) recomputes
//! is the model's own code, not a copy of it. The trainer keeps only each block's
//! input from a forward pass without a graph and later runs one block at a time with
//! gradients (`realsyn_train::step`); everything here is backend-generic and knows
//! nothing of autodiff.

use burn::tensor::Tensor;
use burn::tensor::backend::Backend;

/// One residual block as a function of the token stream `[batch, tokens, width]`.
pub type BlockStage<'a, B> = Box<dyn Fn(Tensor<B, 3>) -> Tensor<B, 3> + 'a>;

pub struct TowerStages<'a, B: Backend> {
    /// The tower's input (captured) -> the first block's input.
    pub stem: Box<dyn Fn() -> Tensor<B, 3> + 'a>,
    pub blocks: Vec<BlockStage<'a, B>>,
    /// The last block's output -> the tower's features `[batch, embed_dim]`.
    pub head: Box<dyn Fn(Tensor<B, 3>) -> Tensor<B, 2> + 'a>,
}

impl<B: Backend> TowerStages<'_, B> {
    /// The whole forward pass.
    pub fn run(&self) -> Tensor<B, 2> {
        (self.head)(self.trunk())
    }

    /// The stem and every block: the head's input.
    pub fn trunk(&self) -> Tensor<B, 3> {
        self.blocks.iter().fold((self.stem)(), |x, block| block(x))
    }
}
