//! A compact BERT encoder (the architecture of all-MiniLM-L6-v2) over candle-core and
//! candle-nn: embeddings, N post-LayerNorm transformer layers, last hidden state.
//!
//! Single sequence, no padding, so no attention mask is needed: every position attends
//! to every other. Weight names follow the Hugging Face `BertModel` checkpoint without
//! the `bert.` prefix (which is how sentence-transformers stores it).

use candle_core::{DType, Device, Module, Tensor, D};
use candle_nn::{embedding, layer_norm, linear, Embedding, LayerNorm, Linear, VarBuilder};
use serde::Deserialize;

/// The subset of `config.json` the forward pass needs.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct BertConfig {
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub intermediate_size: usize,
    pub max_position_embeddings: usize,
    pub type_vocab_size: usize,
    pub layer_norm_eps: f64,
    pub hidden_act: String,
}

impl BertConfig {
    /// Reasons this implementation cannot run the model, if any.
    pub fn check(&self) -> Result<(), String> {
        if self.hidden_act != "gelu" {
            return Err(format!(
                "hidden_act {:?} is not supported (only \"gelu\")",
                self.hidden_act
            ));
        }
        if self.num_attention_heads == 0
            || !self.hidden_size.is_multiple_of(self.num_attention_heads)
        {
            return Err(format!(
                "hidden_size {} is not a multiple of num_attention_heads {}",
                self.hidden_size, self.num_attention_heads
            ));
        }
        if self.type_vocab_size == 0 || self.max_position_embeddings == 0 {
            return Err("type_vocab_size and max_position_embeddings must be > 0".into());
        }
        Ok(())
    }
}

struct Layer {
    query: Linear,
    key: Linear,
    value: Linear,
    attention_out: Linear,
    attention_norm: LayerNorm,
    intermediate: Linear,
    output: Linear,
    output_norm: LayerNorm,
}

pub(crate) struct Bert {
    word: Embedding,
    position: Embedding,
    token_type: Embedding,
    embeddings_norm: LayerNorm,
    layers: Vec<Layer>,
    heads: usize,
    head_dim: usize,
    max_positions: usize,
    device: Device,
}

impl Bert {
    pub fn load(vb: VarBuilder, cfg: &BertConfig) -> candle_core::Result<Self> {
        let h = cfg.hidden_size;
        let eps = cfg.layer_norm_eps;
        let emb = vb.pp("embeddings");
        let mut layers = Vec::with_capacity(cfg.num_hidden_layers);
        for i in 0..cfg.num_hidden_layers {
            let l = vb.pp(format!("encoder.layer.{i}"));
            let att = l.pp("attention");
            layers.push(Layer {
                query: linear(h, h, att.pp("self.query"))?,
                key: linear(h, h, att.pp("self.key"))?,
                value: linear(h, h, att.pp("self.value"))?,
                attention_out: linear(h, h, att.pp("output.dense"))?,
                attention_norm: layer_norm(h, eps, att.pp("output.LayerNorm"))?,
                intermediate: linear(h, cfg.intermediate_size, l.pp("intermediate.dense"))?,
                output: linear(cfg.intermediate_size, h, l.pp("output.dense"))?,
                output_norm: layer_norm(h, eps, l.pp("output.LayerNorm"))?,
            });
        }
        Ok(Self {
            word: embedding(cfg.vocab_size, h, emb.pp("word_embeddings"))?,
            position: embedding(
                cfg.max_position_embeddings,
                h,
                emb.pp("position_embeddings"),
            )?,
            token_type: embedding(cfg.type_vocab_size, h, emb.pp("token_type_embeddings"))?,
            embeddings_norm: layer_norm(h, eps, emb.pp("LayerNorm"))?,
            layers,
            heads: cfg.num_attention_heads,
            head_dim: h / cfg.num_attention_heads,
            max_positions: cfg.max_position_embeddings,
            device: vb.device().clone(),
        })
    }

    pub fn max_positions(&self) -> usize {
        self.max_positions
    }

    /// Last hidden state, shape (1, seq, hidden), for one sequence of token ids.
    pub fn forward(&self, ids: &[u32]) -> candle_core::Result<Tensor> {
        let n = ids.len();
        let ids = Tensor::from_slice(ids, (1, n), &self.device)?;
        let positions = Tensor::arange(0u32, n as u32, &self.device)?.unsqueeze(0)?;
        let types = Tensor::zeros((1, n), DType::U32, &self.device)?;
        let x = self
            .word
            .forward(&ids)?
            .add(&self.position.forward(&positions)?)?
            .add(&self.token_type.forward(&types)?)?;
        let mut x = self.embeddings_norm.forward(&x)?;
        for layer in &self.layers {
            x = self.layer_forward(layer, &x)?;
        }
        Ok(x)
    }

    fn layer_forward(&self, l: &Layer, x: &Tensor) -> candle_core::Result<Tensor> {
        let (b, n, h) = x.dims3()?;
        // (b, n, h) -> (b, heads, n, head_dim)
        let split = |t: Tensor| -> candle_core::Result<Tensor> {
            t.reshape((b, n, self.heads, self.head_dim))?
                .transpose(1, 2)?
                .contiguous()
        };
        let q = split(l.query.forward(x)?)?;
        let k = split(l.key.forward(x)?)?;
        let v = split(l.value.forward(x)?)?;
        let scale = 1.0 / (self.head_dim as f64).sqrt();
        let scores = (q.matmul(&k.t()?.contiguous()?)? * scale)?;
        let probs = candle_nn::ops::softmax_last_dim(&scores)?;
        let context = probs
            .matmul(&v)?
            .transpose(1, 2)?
            .contiguous()?
            .reshape((b, n, h))?;
        let attended = l
            .attention_norm
            .forward(&l.attention_out.forward(&context)?.add(x)?)?;
        let inner = l.intermediate.forward(&attended)?.gelu_erf()?;
        l.output_norm
            .forward(&l.output.forward(&inner)?.add(&attended)?)
    }
}

/// Mean over the sequence axis of (1, seq, hidden) -> hidden floats. With a single
/// unpadded sequence the attention mask is all ones, so masked mean pooling is the mean.
pub(crate) fn mean_pool(hidden: &Tensor) -> candle_core::Result<Vec<f32>> {
    hidden.mean(D::Minus2)?.squeeze(0)?.to_vec1::<f32>()
}
