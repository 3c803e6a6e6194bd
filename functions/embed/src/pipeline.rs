//! The sentence-embedding pipeline: WordPiece tokens (Hugging Face's tokenizer, from the
//! mounted `tokenizer.json`), the int8 MiniLM encoder through `wasi:nn`, mean pooling over the
//! attention mask, L2 normalisation.

use spindle_sdk::{Error, Model, Tensor};
use tokenizers::models::wordpiece::WordPiece;
use tokenizers::{
    AddedToken, NormalizerWrapper, PostProcessorWrapper, PreTokenizerWrapper, Tokenizer, TruncationDirection, TruncationParams,
    TruncationStrategy,
};

/// The model's name in `wasi:nn`: `spin.toml` mounts `models/embed/` at `/models/all-MiniLM-L6-v2/`,
/// so the host's statistics and readiness use the name the protocol uses.
pub const MODEL: &str = "all-MiniLM-L6-v2";
/// The tokenizer, beside the model.
pub const TOKENIZER: &str = "/models/all-MiniLM-L6-v2/tokenizer.json";
/// The longest sequence the model was trained for (sentence-transformers' `max_seq_length`),
/// `[CLS]` and `[SEP]` included.
pub const MAX_TOKENS: usize = 256;
/// The embedding's size.
pub const DIMENSIONS: usize = 384;
/// Sequences run through the encoder together (padded to the longest of them).
const CHUNK: usize = 16;
/// The longest text one input may be, in bytes (the model reads only its first 256 tokens;
/// tokenising far more would cost memory for nothing).
pub const MAX_TEXT_BYTES: usize = 32 << 10;
/// The most text one request may carry, over all its inputs.
pub const MAX_REQUEST_BYTES: usize = 1 << 20;
/// The most tokens one request may have the model see.
pub const MAX_REQUEST_TOKENS: usize = 32_768;

/// Refuses texts that are empty, too long, or too much together; `what(i)` names input `i`.
pub fn check_texts(texts: &[String], what: impl Fn(usize) -> String) -> Result<(), String> {
    if let Some(i) = texts.iter().position(String::is_empty) {
        return Err(format!("{} is an empty string; each input must hold at least one character", what(i)));
    }
    if let Some(i) = texts.iter().position(|t| t.len() > MAX_TEXT_BYTES) {
        return Err(format!(
            "{} is {} bytes; at most {MAX_TEXT_BYTES} (the model reads its first {MAX_TOKENS} tokens)",
            what(i),
            texts[i].len()
        ));
    }
    let total: usize = texts.iter().map(String::len).sum();
    if total > MAX_REQUEST_BYTES {
        return Err(format!("the inputs hold {total} bytes of text; at most {MAX_REQUEST_BYTES} per request"));
    }
    Ok(())
}

/// Refuses sequences that come to more tokens than one request may have.
pub fn check_tokens(sequences: &[Sequence]) -> Result<(), String> {
    let total: usize = sequences.iter().map(|s| s.ids.len()).sum();
    if total > MAX_REQUEST_TOKENS {
        return Err(format!("the inputs come to {total} tokens; at most {MAX_REQUEST_TOKENS} per request: send fewer inputs per request"));
    }
    Ok(())
}

/// The parts of a `tokenizer.json` a BERT tokenizer has (its truncation and padding are this
/// function's own).
#[derive(serde::Deserialize)]
struct TokenizerFile {
    normalizer: Option<NormalizerWrapper>,
    pre_tokenizer: Option<PreTokenizerWrapper>,
    post_processor: Option<PostProcessorWrapper>,
    model: WordPiece,
    added_tokens: Vec<AddedTokenEntry>,
}

#[derive(serde::Deserialize)]
struct AddedTokenEntry {
    content: String,
    special: bool,
}

/// One input as the model sees it.
pub struct Sequence {
    /// Token ids, `[CLS]` and `[SEP]` included.
    pub ids: Vec<u32>,
    /// Whether it was cut to [`MAX_TOKENS`].
    pub truncated: bool,
}

/// Why an input cannot be embedded; the caller's fault unless said otherwise.
#[derive(Debug)]
pub enum Refusal {
    /// The request is wrong: the message says how.
    Input(String),
    /// The function or the model failed.
    Internal(String),
}

impl From<Error> for Refusal {
    fn from(e: Error) -> Self {
        match e.kind() {
            spindle_sdk::ErrorKind::InvalidInput => Refusal::Input(e.to_string()),
            _ => Refusal::Internal(e.to_string()),
        }
    }
}

/// The tokenizer and the model.
pub struct Embedder {
    tokenizer: Tokenizer,
    cls: u32,
    sep: u32,
}

impl Embedder {
    /// Reads the mounted tokenizer, set to truncate at [`MAX_TOKENS`] and not to pad.
    ///
    /// Its parts are read with the library's own types, but the model as a `WordPiece` rather
    /// than through the library's untagged model enum, which buffers the whole vocabulary and
    /// tries each kind of model in turn: a third of the time, paid on every request.
    pub fn load() -> Result<Self, Refusal> {
        let json = std::fs::read(TOKENIZER).map_err(|e| Refusal::Internal(format!("{TOKENIZER}: {e}")))?;
        let file: TokenizerFile = serde_json::from_slice(&json).map_err(|e| Refusal::Internal(format!("{TOKENIZER}: {e}")))?;
        let mut tokenizer = Tokenizer::new(file.model);
        let internal = |e: tokenizers::Error| Refusal::Internal(format!("{TOKENIZER}: {e}"));
        tokenizer.with_normalizer(file.normalizer).map_err(internal)?;
        tokenizer.with_pre_tokenizer(file.pre_tokenizer).with_post_processor(file.post_processor);
        tokenizer
            .add_special_tokens(file.added_tokens.into_iter().filter(|t| t.special).map(|t| AddedToken::from(t.content, true)))
            .map_err(internal)?;
        tokenizer
            .with_truncation(Some(TruncationParams {
                max_length: MAX_TOKENS,
                strategy: TruncationStrategy::LongestFirst,
                stride: 0,
                direction: TruncationDirection::Right,
            }))
            .map_err(|e| Refusal::Internal(format!("truncation: {e}")))?;
        tokenizer.with_padding(None);
        let id = |token: &str| tokenizer.token_to_id(token).ok_or_else(|| Refusal::Internal(format!("{TOKENIZER} has no {token}")));
        let (cls, sep) = (id("[CLS]")?, id("[SEP]")?);
        Ok(Self { tokenizer, cls, sep })
    }

    /// The tokens of a text, cut to [`MAX_TOKENS`].
    pub fn tokenize(&self, text: &str) -> Result<Sequence, Refusal> {
        let encoding = self.tokenizer.encode(text, true).map_err(|e| Refusal::Input(format!("could not tokenize: {e}")))?;
        Ok(Sequence { ids: encoding.get_ids().to_vec(), truncated: !encoding.get_overflowing().is_empty() })
    }

    /// A sequence of token ids the caller tokenized (without `[CLS]` and `[SEP]`, which are
    /// added), cut to [`MAX_TOKENS`].
    pub fn sequence_of_ids(&self, ids: &[i64]) -> Result<Sequence, Refusal> {
        let vocabulary = self.tokenizer.get_vocab_size(true) as i64;
        if let Some(bad) = ids.iter().find(|&&id| !(0..vocabulary).contains(&id)) {
            return Err(Refusal::Input(format!("token {bad} is not in the model's vocabulary of {vocabulary}")));
        }
        let kept = ids.len().min(MAX_TOKENS - 2);
        let mut sequence = Vec::with_capacity(kept + 2);
        sequence.push(self.cls);
        sequence.extend(ids[..kept].iter().map(|&id| id as u32));
        sequence.push(self.sep);
        Ok(Sequence { ids: sequence, truncated: kept < ids.len() })
    }

    /// One L2-normalised embedding per sequence, in order.
    pub fn embed(&self, sequences: &[Sequence]) -> Result<Vec<Vec<f32>>, Refusal> {
        let model = Model::open(MODEL)?;
        // Batched by length, so that little padding is run; answered in the callers' order.
        let mut order: Vec<usize> = (0..sequences.len()).collect();
        order.sort_by_key(|&i| sequences[i].ids.len());
        let mut embeddings = vec![Vec::new(); sequences.len()];
        for chunk in order.chunks(CHUNK) {
            let batch: Vec<&Sequence> = chunk.iter().map(|&i| &sequences[i]).collect();
            for (&i, embedding) in chunk.iter().zip(run(&model, &batch)?) {
                embeddings[i] = embedding;
            }
        }
        Ok(embeddings)
    }
}

/// Runs one padded batch and pools it.
fn run(model: &Model, batch: &[&Sequence]) -> Result<Vec<Vec<f32>>, Refusal> {
    let length = batch.iter().map(|s| s.ids.len()).max().unwrap_or(0);
    let shape = [batch.len(), length];
    let mut ids = vec![0i64; batch.len() * length];
    let mut mask = vec![0i64; batch.len() * length];
    for (row, sequence) in batch.iter().enumerate() {
        for (column, &id) in sequence.ids.iter().enumerate() {
            ids[row * length + column] = i64::from(id);
            mask[row * length + column] = 1;
        }
    }
    let types = vec![0i64; batch.len() * length];
    let outputs = model.run(&[
        ("input_ids", Tensor::from_i64(&shape, &ids)?),
        ("attention_mask", Tensor::from_i64(&shape, &mask)?),
        ("token_type_ids", Tensor::from_i64(&shape, &types)?),
    ])?;
    let hidden = outputs.get("last_hidden_state")?;
    if hidden.shape() != [batch.len() as u32, length as u32, DIMENSIONS as u32] {
        return Err(Refusal::Internal(format!("the encoder answered shape {:?}", hidden.shape())));
    }
    let hidden = hidden.to_f32()?;
    Ok(batch
        .iter()
        .enumerate()
        .map(|(row, sequence)| {
            let mut pooled = vec![0f32; DIMENSIONS];
            for column in 0..sequence.ids.len() {
                let token = &hidden[(row * length + column) * DIMENSIONS..][..DIMENSIONS];
                pooled.iter_mut().zip(token).for_each(|(p, t)| *p += t);
            }
            let count = sequence.ids.len().max(1) as f32;
            pooled.iter_mut().for_each(|p| *p /= count);
            let norm = pooled.iter().map(|p| p * p).sum::<f32>().sqrt().max(1e-12);
            pooled.iter_mut().for_each(|p| *p /= norm);
            pooled
        })
        .collect())
}
