"""all-MiniLM-L6-v2 sentence embeddings behind OpenAI's API, with OpenAI's own client, against a
reference pipeline in Python: Hugging Face's `tokenizers` with the same tokenizer.json, onnxruntime
on the same model, the same pooling."""

from __future__ import annotations

import base64

import numpy as np
import openai
import pytest
import requests
import tritonclient.http as triton

from conftest import ROOT

MODEL_DIR = ROOT / "models" / "embed"
MODEL = "all-MiniLM-L6-v2"
LONG = " ".join(["The history of the printing press is long and full of surprising turns."] * 40)
CORPUS = [
    "The quick brown fox jumps over the lazy dog.",
    "Café crème brûlée à la française, s'il vous plaît.",
    "naïve résumé coöperate façade Ångström",
    "東京は日本の首都です。",
    "机器学习很有趣，我每天都在学习。",
    "한국어 문장도 잘 처리되어야 합니다.",
    "I love pizza 🍕🔥 and tacos 🌮!",
    "👍🏽",
    "ALL CAPS SHOUTING TEXT",
    "  leading and trailing spaces\tand a tab\nand a newline  ",
    "Привет, как дела?",
    "x",
    LONG,
]


@pytest.fixture(scope="module")
def reference():
    """Embeddings and token counts the way sentence-transformers makes them."""
    import onnxruntime as ort
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(MODEL_DIR / "tokenizer.json"))
    tokenizer.enable_truncation(256)
    tokenizer.no_padding()
    session = ort.InferenceSession(str(MODEL_DIR / "model.onnx"), providers=["CPUExecutionProvider"])

    def embed(text: str):
        ids = np.array([tokenizer.encode(text).ids], dtype=np.int64)
        (hidden,) = session.run(["last_hidden_state"], {"input_ids": ids, "attention_mask": np.ones_like(ids),
                                                         "token_type_ids": np.zeros_like(ids)})
        pooled = hidden[0].mean(axis=0)
        return pooled / np.linalg.norm(pooled), ids.shape[1]

    embed.tokenizer = tokenizer
    return embed


@pytest.fixture(scope="module")
def client(spindle):
    return openai.OpenAI(base_url=f"{spindle.url}/v1", api_key="unused", max_retries=0)


def cosine_distance(a, b) -> float:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return 1 - float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def test_embeddings_equal_the_reference_pipeline(client, reference):
    answer = client.embeddings.create(model=MODEL, input=CORPUS)
    assert answer.model == MODEL and answer.object == "list"
    assert [d.index for d in answer.data] == list(range(len(CORPUS)))
    expected_tokens = 0
    for text, item in zip(CORPUS, answer.data):
        want, tokens = reference(text)
        expected_tokens += tokens
        assert len(item.embedding) == 384
        assert cosine_distance(item.embedding, want) < 1e-4, text
        assert abs(np.linalg.norm(item.embedding) - 1) < 1e-5
    assert answer.usage.prompt_tokens == answer.usage.total_tokens == expected_tokens
    assert reference(LONG)[1] == 256, "the long input is cut at the model's 256 tokens"


def test_base64_token_arrays_and_a_single_string(client, reference):
    text = CORPUS[1]
    floats = client.embeddings.create(model=MODEL, input=text, encoding_format="float").data[0].embedding
    raw = requests.post(f"{client.base_url}embeddings", json={"model": MODEL, "input": text, "encoding_format": "base64"},
                        timeout=60).json()
    decoded = np.frombuffer(base64.b64decode(raw["data"][0]["embedding"]), dtype="<f4")
    np.testing.assert_allclose(decoded, floats, atol=1e-7)
    ids = reference.tokenizer.encode(text, add_special_tokens=False).ids
    by_tokens = client.embeddings.create(model=MODEL, input=[ids, ids[:3]])
    assert cosine_distance(by_tokens.data[0].embedding, floats) < 1e-6
    assert by_tokens.usage.prompt_tokens == len(ids) + 2 + 3 + 2, "[CLS] and [SEP] counted"
    single = client.embeddings.create(model=MODEL, input=ids)
    assert cosine_distance(single.data[0].embedding, floats) < 1e-6


def test_a_paraphrase_ranks_above_unrelated_sentences(client):
    query = "How do I reset my password?"
    candidates = ["What is the way to change my login password?", "The weather in Lisbon is sunny today.",
                  "Bananas are rich in potassium.", "The stock market fell sharply on Monday."]
    data = client.embeddings.create(model=MODEL, input=[query, *candidates]).data
    q = np.array(data[0].embedding)
    scores = [float(q @ np.array(d.embedding)) for d in data[1:]]
    assert scores.index(max(scores)) == 0, scores
    assert scores[0] - max(scores[1:]) > 0.2, scores


def test_truncation_is_reported_or_refused_when_asked(spindle):
    url = f"{spindle.url}/v1/embeddings"
    cut = requests.post(url, json={"model": MODEL, "input": ["short", LONG]}, timeout=60).json()
    assert cut["usage"]["truncated_inputs"] == [1]
    strict = requests.post(url, json={"model": MODEL, "input": ["short", LONG], "truncate": False}, timeout=60)
    assert strict.status_code == 400 and "input 1 is longer than the model's 256 tokens" in strict.json()["error"]["message"]
    fine = requests.post(url, json={"model": MODEL, "input": "short", "truncate": False}, timeout=60).json()
    assert "truncated_inputs" not in fine["usage"]


def test_bad_requests_get_openai_errors(client, spindle):
    with pytest.raises(openai.BadRequestError) as empty:
        client.embeddings.create(model=MODEL, input="")
    assert "empty string" in empty.value.body["message"] and empty.value.body["param"] == "input"
    with pytest.raises(openai.BadRequestError) as dimensions:
        client.embeddings.create(model=MODEL, input="hi", dimensions=128)
    assert "'dimensions' is not supported" in dimensions.value.body["message"]
    with pytest.raises(openai.NotFoundError) as unknown:
        client.embeddings.create(model="text-embedding-3-small", input="hi")
    assert unknown.value.body["code"] == "model_not_found" and unknown.value.body["param"] is None
    url = f"{spindle.url}/v1/embeddings"
    for body, text in [
        (b"{not json", "not a valid embeddings request"),
        (b'{"model": "all-MiniLM-L6-v2", "input": []}', "empty list"),
        (b'{"model": "all-MiniLM-L6-v2", "input": [["a"]]}', "not a valid embeddings request"),
        (b'{"model": "all-MiniLM-L6-v2", "input": [[1, 99999999]]}', "not in the model's vocabulary"),
        (b'{"model": "all-MiniLM-L6-v2", "input": "hi", "encoding_format": "int8"}', "encoding_format"),
        (b'{"model": "all-MiniLM-L6-v2", "input": "hi", "temperature": 1}', "unknown field"),
        (('{"model": "all-MiniLM-L6-v2", "input": "%s"}' % ("word " * 7000)).encode(), "at most 32768"),
        (('{"model": "all-MiniLM-L6-v2", "input": [%s]}' % ",".join(['"%s"' % LONG] * 200)).encode(), "at most 32768 per request"),
    ]:
        r = requests.post(url, data=body, headers={"content-type": "application/json"}, timeout=60)
        assert r.status_code == 400, (body, r.text)
        error = r.json()["error"]
        assert text in error["message"] and error["type"] == "invalid_request_error", (body, error)
    assert requests.get(url, timeout=30).status_code == 405
    assert requests.get(f"{spindle.url}/v1/models", timeout=30).json()["data"][0]["id"] == MODEL
    assert requests.get(f"{spindle.url}/v1/models/nope", timeout=30).status_code == 404


@pytest.mark.parametrize("binary", [False, True])
def test_the_open_inference_protocol_takes_text_as_bytes(spindle, client, binary):
    texts = CORPUS[:4]
    triton_client = triton.InferenceServerClient(spindle.url.removeprefix("http://"))
    assert triton_client.get_model_metadata(MODEL)["inputs"] == [{"name": "text", "datatype": "BYTES", "shape": [-1]}]
    text = triton.InferInput("text", [len(texts)], "BYTES")
    text.set_data_from_numpy(np.array([t.encode() for t in texts], dtype=np.object_), binary_data=binary)
    out = triton.InferRequestedOutput("embedding", binary_data=binary)
    got = triton_client.infer(MODEL, [text], outputs=[out]).as_numpy("embedding")
    assert got.shape == (4, 384)
    want = [d.embedding for d in client.embeddings.create(model=MODEL, input=texts).data]
    np.testing.assert_allclose(got, want, atol=1e-6)
    bad = requests.post(f"{spindle.url}/v2/models/{MODEL}/infer", timeout=30,
                        json={"inputs": [{"name": "text", "datatype": "BYTES", "shape": [2], "data": ["only one"]}]})
    assert bad.status_code == 400 and "shape [2] but 1 strings" in bad.json()["error"]
    for shape in ([-1, 2], ["x"], [5000]):
        odd = requests.post(f"{spindle.url}/v2/models/{MODEL}/infer", timeout=30,
                            json={"inputs": [{"name": "text", "datatype": "BYTES", "shape": shape, "data": ["a"]}]})
        assert odd.status_code == 400, (shape, odd.text)
