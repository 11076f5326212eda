//! Paper §3.2, hierarchical retrieval (Fig. 3): `stage` gives each image the 3
//! nearest sentences of its nearest text clusters (the `retrieve` stage);
//! `pair_images` pairs images that come without documents (paper §4, Table 12);
//! `own_page` judges retrieval with a real signal on a store without pretrained
//! weights (docs/pairing.md).

pub mod own_page;
pub mod pair_images;
pub mod stage;
