"""babyllama export: write a model in another format."""

HELP = "export a model to Hugging Face safetensors (hf), llama2.c (.bin) or GGUF"

FORMATS = ("hf",)


def add_arguments(parser):
    parser.add_argument("--model", required=True, help="run folder, checkpoint folder or model folder")
    parser.add_argument("--format", default="hf", choices=FORMATS, help="output format")
    parser.add_argument("--out", required=True, help="output folder (hf) or file")


def run(args) -> int:
    from babyllama.export.hf import export_hf

    path = export_hf(args.model, args.out)
    print(f"exported {args.model} to {path} (Hugging Face format)")
    return 0
