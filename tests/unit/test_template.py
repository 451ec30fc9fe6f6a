"""The embedded tokenizer renders chats exactly as Qwen2.5-Instruct's template does."""

QWEN_SYSTEM = "You are Qwen, created by Alibaba Cloud. You are a helpful assistant."


def test_renders_like_qwen25_with_default_system_prompt(tiny_tokenizer):
    chat = [
        {"role": "user", "content": "感冒有什么症状？"},
        {"role": "assistant", "content": "流鼻涕。"},
    ]
    expected = (
        f"<|im_start|>system\n{QWEN_SYSTEM}<|im_end|>\n"
        "<|im_start|>user\n感冒有什么症状？<|im_end|>\n"
        "<|im_start|>assistant\n流鼻涕。<|im_end|>\n"
    )
    assert tiny_tokenizer.apply_chat_template(chat, tokenize=False) == expected


def test_own_system_prompt_and_generation_prompt(tiny_tokenizer):
    chat = [
        {"role": "system", "content": "你是医生。"},
        {"role": "user", "content": "胃疼吃什么药？"},
    ]
    text = tiny_tokenizer.apply_chat_template(chat, tokenize=False, add_generation_prompt=True)
    assert text == (
        "<|im_start|>system\n你是医生。<|im_end|>\n"
        "<|im_start|>user\n胃疼吃什么药？<|im_end|>\n<|im_start|>assistant\n"
    )


def test_chatml_tokens_are_single_special_ids(tiny_tokenizer):
    for token in ("<|endoftext|>", "<|im_start|>", "<|im_end|>"):
        ids = tiny_tokenizer(token, add_special_tokens=False)["input_ids"]
        assert len(ids) == 1 and tiny_tokenizer.convert_ids_to_tokens(ids) == [token]
    assert tiny_tokenizer.eos_token == "<|im_end|>" and tiny_tokenizer.pad_token == "<|endoftext|>"
    text = "胃疼吃什么药？"
    assert tiny_tokenizer.decode(tiny_tokenizer(text)["input_ids"]) == text
