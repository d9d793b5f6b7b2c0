"""Networks: tensors in, tensors out; no file I/O except weight loading."""
