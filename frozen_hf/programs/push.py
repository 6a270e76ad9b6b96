"""frozen-push: publish a training output folder to the Hugging Face Hub in one commit, or print the card it would get.

    frozen-push <output_dir> <repo_id> [--private] [--revision BRANCH] [--commit-message MSG] [--token TOKEN]
                [--trained-parts-only] [--eval-report <frozen-eval output folder>]
    frozen-push card <output_dir> <repo_id> [--eval-report ...]

The program reads top to bottom: parse -> publish (`frozen_hf.hub.publish`, which checks everything before
uploading) -> print the commit URL.
"""

from __future__ import annotations

import argparse
import sys
from typing import Sequence

from frozen_hf.hub.model_card import build_model_card
from frozen_hf.hub.publish import PublishError, check_repo_id, publish


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="frozen-push", description="Publish Frozen models to the Hub.")
    commands = parser.add_subparsers(dest="command", required=True)
    push = commands.add_parser("push", help="Push a training output folder (model, processor, card) in one commit.")
    push.add_argument("output_dir", help="the training program's final output folder")
    push.add_argument("repo_id", help="namespace/name of the model repo (created if missing)")
    push.add_argument("--private", action="store_true", help="create the repo private")
    push.add_argument("--revision", default=None, help="branch to commit to (created if missing; default main)")
    push.add_argument("--commit-message", default=None)
    push.add_argument("--token", default=None, help="write token (default: HF_TOKEN or the stored login)")
    push.add_argument("--trained-parts-only", action="store_true",
                      help="upload only the vision encoder + projection; the LM is referenced by Hub id and commit")
    push.add_argument("--create-pr", action="store_true", help="open a pull request instead of committing")
    push.add_argument("--eval-report", default=None,
                      help="evaluation results for the card: a frozen-eval --output folder, its results.json, "
                           "or a report JSON (default: <output_dir>/evaluation or eval_report.json if present)")
    push.add_argument("--language-model-repo", default=None, help="Hub id of the LM (trained-parts-only)")
    push.add_argument("--language-model-revision", default=None, help="revision of that LM (trained-parts-only)")
    push.add_argument("--license", default=None, help="license id for the card, where the LM imposes none")
    push.add_argument("--no-verify-language-model", action="store_true",
                      help="trained-parts-only: skip checking the Hub LM's weights against the trained model's")
    card = commands.add_parser("card", help="Print the model card an output folder would get.")
    card.add_argument("output_dir")
    card.add_argument("repo_id")
    card.add_argument("--eval-report", default=None)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point (`frozen-push`); returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    # `frozen-push <dir> <repo>` is `push` without the sub-command.
    if argv and argv[0] not in ("push", "card", "-h", "--help"):
        argv = ["push", *argv]
    args = _parser().parse_args(argv)
    try:
        if args.command == "card":
            print(build_model_card(args.output_dir, args.eval_report, repo_id=check_repo_id(args.repo_id)))
            return 0
        info = publish(
            args.output_dir,
            args.repo_id,
            private=args.private,
            revision=args.revision,
            commit_message=args.commit_message,
            token=args.token,
            trained_parts_only=args.trained_parts_only,
            create_pr=args.create_pr,
            eval_report=args.eval_report,
            language_model_repo_id=args.language_model_repo,
            language_model_revision=args.language_model_revision,
            license=args.license,
            verify_language_model=not args.no_verify_language_model,
        )
    except (PublishError, FileNotFoundError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(info.pr_url or info.commit_url)
    return 0


if __name__ == "__main__":
    sys.exit(main())
