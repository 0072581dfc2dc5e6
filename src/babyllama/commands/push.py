"""babyllama push: publish a model to the Hugging Face Hub (exported model + tokenizer + model card)."""

HELP = "upload a model (merged weights, tokenizer, model card) to the Hugging Face Hub"


def add_arguments(parser):
    parser.add_argument("--model", required=True, help="run folder, checkpoint folder or model folder")
    parser.add_argument("--repo", required=True, help="Hub repository, user/name or org/name (created if missing)")
    parser.add_argument("--private", action="store_true", help="create the repository as private")
    parser.add_argument("--token", default=None,
                        help="Hub token with write access (default: HF_TOKEN or the `hf auth login` one); never saved")
    parser.add_argument("--license", default=None, help="license of the weights, as a Hub license id (apache-2.0, ...)")
    parser.add_argument("--gguf_type", default=None, choices=("f32", "f16", "q8_0"),
                        help="also upload a GGUF file of this type and its Ollama Modelfile")


def run(args) -> int:
    from babyllama.export.card import check_license
    from babyllama.export.hub import push_run
    from babyllama.pathchecks import check_model_path

    check_model_path(args.model)  # what is wrong here is said before the network is tried
    check_license(args.license)
    push_run(args.model, args.repo, private=args.private, token=args.token, license=args.license,
             gguf_type=args.gguf_type)
    return 0
