def test_tiny_run_has_a_model(tiny_run):
    assert (tiny_run / "model" / "model.safetensors").is_file()
    assert (tiny_run / "manifest.json").is_file()
