def extract_non_reasoning_content(text: str) -> str:
    """AISBench's: the answer after a reasoning model's </think>."""
    return text.split("</think>")[-1]
