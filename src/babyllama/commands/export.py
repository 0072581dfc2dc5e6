"""babyllama export: write a model in another format."""

HELP = "export a model to Hugging Face safetensors (hf), llama2.c (.bin) or GGUF"

FORMATS = ("hf", "llama2c", "gguf")


def add_arguments(parser):
    parser.add_argument("--model", required=True, help="run folder, checkpoint folder or model folder")
    parser.add_argument("--format", default="hf", choices=FORMATS, help="output format")
    parser.add_argument("--out", required=True,
                        help="hf: output folder. llama2c: a folder (model.bin + tokenizer.bin) or NAME.bin "
                             "(+ NAME.tokenizer.bin). gguf: NAME.gguf or a folder (model-TYPE.gguf)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace existing files or a folder that an earlier `babyllama export` did not write "
                             "(an earlier export is replaced without it)")
    parser.add_argument("--llama2c_version", type=int, default=0, choices=(0, 2),
                        help="llama2c: 0 = float32 legacy layout for run.c, 2 = int8 (Q8_0) layout for runq.c")
    parser.add_argument("--gguf_type", default="f16", choices=("f32", "f16", "q8_0"),
                        help="gguf: storage type of the weight matrices (norms stay f32)")
    parser.add_argument("--license", default=None, help="license of the weights, as a Hub license id (apache-2.0, "
                        "mit, ...), written into the model card (README.md, or NAME.md beside a file)")


def output_files(args):
    """(the folder written into, the files written, whether the format fills the folder) for these flags."""
    from pathlib import Path

    from babyllama.export.guard import hf_files

    if args.format == "hf":
        return Path(args.out), hf_files(Path(args.out)), True
    if args.format == "llama2c":
        from babyllama.export.llama2c import output_paths

        files = list(output_paths(args.out))
    else:
        from babyllama.export.gguf import output_path

        files = [output_path(args.out, args.gguf_type)]
    return files[0].parent, files, False


def run(args) -> int:
    import os

    from babyllama.export.card import check_license

    check_license(args.license)  # before anything is written

    from babyllama.pathchecks import check_model_path
    from babyllama.export.guard import check_export_target, file_times, write_marker, written_since

    check_model_path(args.model)
    folder, files, writes_folder = output_files(args)
    check_export_target(args.model, folder, files, args.overwrite, writes_folder)  # before the model is loaded
    if args.format == "hf":
        from babyllama.export.hf import export_hf

        before = file_times(folder)
        path = export_hf(args.model, args.out)
        write_marker(folder, args.model, "hf", written_since(folder, before))
        print(f"exported {args.model} to {path} (Hugging Face format)")
    elif args.format == "llama2c":
        from babyllama.export.llama2c import export_llama2c

        model_file, tokenizer_file = export_llama2c(args.model, args.out, version=args.llama2c_version)
        write_marker(folder, args.model, f"llama2c v{args.llama2c_version}", files)
        print(f"exported {args.model} to {model_file} ({os.path.getsize(model_file):,} bytes, llama2.c version "
              f"{args.llama2c_version}) and {tokenizer_file}")
        runner = "runq" if args.llama2c_version == 2 else "run"
        print(f"run it with llama2.c: ./{runner} {model_file} -z {tokenizer_file} -t 0")
    else:
        from babyllama.export.gguf import export_gguf

        path = export_gguf(args.model, args.out, args.gguf_type)
        write_marker(folder, args.model, f"gguf {args.gguf_type}", files)
        print(f"exported {args.model} to {path} ({os.path.getsize(path):,} bytes, GGUF {args.gguf_type})")
        print(f"run it with llama.cpp: llama-completion -m {path} -p 'Once upon a time' -n 200 --temp 0")
    from babyllama.export.sharing import write_sharing_files  # the model card (+ Modelfile for GGUF)

    print("wrote " + ", ".join(map(str, write_sharing_files(args.model, args.out, args.format,
                                                           path if args.format == "gguf" else args.out, args.license))))
    return 0
