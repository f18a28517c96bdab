"""TinyVLM: prefix-LM loss, greedy decoding with a KV cache, memorising a tiny VQA batch, checkpoints."""

import torch

from vla_course.models import TinyVLM, VLMConfig, count_parameters
from vla_course.models.synthetic import course_tokenizer, random_vqa_batch, tiny_vlm_config




def test_default_vlm_shapes_and_parameter_count():
    torch.manual_seed(0)
    vlm = TinyVLM(course_tokenizer(), VLMConfig())
    batch = random_vqa_batch(3)
    logits, targets = vlm.answer_logits(batch)
    n_ans = max(len(vlm.tokenizer.encode(a)) for a in batch["answer"]) + 1  # + <eos>
    assert logits.shape == (3, n_ans, len(vlm.tokenizer)) and targets.shape == (3, n_ans)
    prefix, pad = vlm.embed_prefix(batch)
    longest = max(len(vlm.tokenizer.encode(q)) for q in batch["prompt"])
    assert prefix.shape[:2] == pad.shape and prefix.shape[1] == 2 * 16 + 1 + longest  # images, <bos>, prompt
    counts = count_parameters(vlm)
    assert counts["total"] == sum(p.numel() for p in vlm.parameters())
    assert counts["total"] == counts["vision"] + counts["text_embedding"] + counts["backbone"]
    assert 150_000 < counts["total"] < 1_000_000


def test_generate_matches_teacher_forced_logits():
    """The cached, token-by-token decoder must give the same logits as one uncached pass."""
    torch.manual_seed(0)
    vlm = TinyVLM(course_tokenizer(), tiny_vlm_config())
    batch = random_vqa_batch(4)  # prompts of different lengths -> padding inside the cache
    texts, step_logits = vlm.generate(batch, max_new_tokens=5, return_logits=True)
    # teacher-force the generated words (truncated at max_new_tokens, no <eos> yet if it did not stop)
    forced = dict(batch, answer=texts)
    logits, targets = vlm.answer_logits(forced)
    for i, text in enumerate(texts):
        n = min(len(vlm.tokenizer.encode(text)) + 1, step_logits.shape[1])
        torch.testing.assert_close(step_logits[i, :n], logits[i, :n], atol=1e-4, rtol=1e-4)


def test_memorises_a_tiny_vqa_batch():
    torch.manual_seed(0)
    vlm = TinyVLM(course_tokenizer(), tiny_vlm_config())
    batch = random_vqa_batch(4)
    opt = torch.optim.AdamW(vlm.parameters(), lr=3e-3, weight_decay=0.0)
    first = vlm.compute_loss(batch).item()
    for _ in range(150):
        loss = vlm.compute_loss(batch)
        opt.zero_grad()
        loss.backward()
        opt.step()
    print(f"answer loss {first:.3f} -> {loss.item():.4f}")
    assert loss.item() < 0.05 * first, (first, loss.item())
    vlm.eval()
    assert vlm.generate(batch, max_new_tokens=6) == list(batch["answer"])
    # a different question about the same image gets its own memorised answer
    one = {k: (v[:1] if torch.is_tensor(v) else v[:1]) for k, v in batch.items()}
    assert vlm.generate(one, prompts=batch["prompt"][0]) == [batch["answer"][0]]


def test_vlm_checkpoint_round_trip(tmp_path):
    torch.manual_seed(0)
    tok = course_tokenizer()
    tok.add_words(["grown"])
    vlm = TinyVLM(tok, tiny_vlm_config())
    vlm.save_pretrained(tmp_path)
    again = TinyVLM.from_pretrained(tmp_path)
    assert again.tokenizer.id_to_word == tok.id_to_word
    batch = random_vqa_batch(2)
    torch.testing.assert_close(again.compute_loss(batch), vlm.compute_loss(batch))
