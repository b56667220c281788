"""The Classify tab: pasted lines or an uploaded .txt/.csv, classified by the trained classifier or
zero-shot by the diffusion model, with probabilities, per-token explanations, accuracy and a CSV."""

from __future__ import annotations

import dataclasses
import html
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import gradio as gr
import pandas as pd

import dlm
from dlm.classify import DiscriminativeClassifier, GenerativeClassifier, evaluate, wilson_interval
from dlm.tables import guess_label_column, guess_text_column, read_table, select_texts
from webapp import models
from webapp.components import File, Slider, classifier_or_error, model_or_error, ui_error, ui_warning
from webapp.files import request_folder
from webapp.limits import check_classify_work, pieces_within
from webapp.models import TrainedClassifier, gpu
from webapp.runs import as_int, check_text, display_name, in_range
from webapp.settings import (CLASSIFIER, DEFAULT_LABEL_PROMPT, DEFAULT_LABELS, DIFFUSION, MAX_CLASSIFY_SAMPLES,
                             MAX_LABEL_CHARS, MAX_LABELS, MAX_ROWS, MAX_UPLOAD_BYTES, MAX_UPLOAD_MB, STATE_TTL_SECONDS,
                             TRAINED, ZERO_SHOT)

OUTPUTS = 7  # what classify() updates: probabilities, explanation, table, CSV, summary, confusion matrix, state
EMPTY_RESULTS = pd.DataFrame(columns=["#", "text", "prediction"])  # the table's headers before the first run


def parse_labels(labels: str, template: str) -> tuple[list[str], list[str]]:
    """Class names from "a, b, c" and one prompt per class from a template with {label}."""
    names = [name.strip() for name in (labels or "").split(",") if name.strip()]
    if len(names) < 2:
        raise ValueError("give at least two labels, separated by commas (e.g. positive, negative)")
    if len(names) > MAX_LABELS:
        raise ValueError(f"at most {MAX_LABELS} labels, got {len(names)}")
    if len({name.casefold() for name in names}) != len(names):
        raise ValueError(f"labels must be distinct: {names}")
    for name in names:
        if len(name) > MAX_LABEL_CHARS:
            raise ValueError(f"a label has at most {MAX_LABEL_CHARS} characters, got {len(name)}")
    template = template or ""
    if "{label}" not in template:
        raise ValueError("the label prompt must contain {label}, e.g. 'A {label} review:'")
    if len(template) > 200:
        raise ValueError(f"the label prompt has {len(template)} characters; the limit is 200")
    return names, [template.replace("{label}", name) for name in names]


def describe_classifier(trained: TrainedClassifier, samples: int | None = None) -> str:
    """How the trained classifier decides, in one sentence (Markdown; `samples`: the cap in use)."""
    clf = trained.classifier
    if isinstance(clf, DiscriminativeClassifier):
        how = "a classification head on the encoder, one forward pass per text"
    else:
        models = "one model per class" if trained.design == "per-class" else "one model given each class's prompt"
        if clf.kind == "masked":
            rounds = min(clf.round_samples, samples) if samples is not None else clf.round_samples
            cap = f", at most {samples} per text" if samples is not None else ""
            how = (f"{models}; Bayes' rule over their ELBOs, {rounds} shared mask patterns at a time, "
                   f"stopping once the top class leads by {clf.margin:g} standard errors{cap}")
        else:
            how = f"{models}; Bayes' rule over their exact likelihoods"
    return f"{trained.design}, {trained.family}: {how}"


def calibration_note(trained: TrainedClassifier) -> str:
    validation = trained.spec.get("validation")
    temperature = f"temperature {trained.classifier.temperature:.2f}"
    if isinstance(validation, dict) and isinstance(validation.get("texts"), int):
        return f"{temperature}, fitted on {validation['texts']:,} validation texts"
    return f"{temperature} (not calibrated on validation texts)"


def make_classifier(mode: str, samples: int, trained: GenerativeClassifier | DiscriminativeClassifier | None = None,
                    lm: dlm.LanguageModel | None = None, labels: Sequence[str] = (), prompts: Sequence[str] = ()):
    """The one place that decides which classifier the Classify tab uses (see dlm.classify.Classifier).

    TRAINED: the loaded classifier, its Monte-Carlo samples capped at `samples` per text (fewer when a
    round is already larger); ZERO_SHOT: the diffusion model `lm` after each label's prompt, `samples`
    mask patterns per text.
    """
    from dlm.classify import ZeroShotClassifier

    if mode == TRAINED:
        if isinstance(trained, GenerativeClassifier):
            return dataclasses.replace(trained, max_samples=samples, round_samples=min(trained.round_samples, samples))
        return trained  # discriminative: one forward pass per text, nothing to cap
    return ZeroShotClassifier(lm, labels, prompts, num_samples=samples)


def passes_per_text(classifier, samples: int) -> tuple[int, int]:
    """(labels scored, forward passes per label) for one text, at most: a discriminative head scores every
    label in one pass; an exact (causal) likelihood takes one pass per label; an ELBO up to `samples`."""
    if isinstance(classifier, DiscriminativeClassifier):
        return 1, 1
    exact = all(lm.kind == "causal" for lm in classifier.models)
    return len(classifier.labels), 1 if exact else samples


def fit_work(classifier, texts: list[str], samples: int):
    """The classifier to run within the per-request work limit, and a note when it reads less.

    A long text is read as several pieces, each a forward row per label and mask pattern. When the
    texts read whole would exceed the limit, long ones are read to fewer pieces (as many as fit, the same
    for every text, taken as the classifier truncates: first and last pieces, or first) and the note says
    so; when even one piece per text is too much, ValueError."""
    labels, per_label = passes_per_text(classifier, samples)
    if not isinstance(classifier, GenerativeClassifier):
        check_classify_work(len(texts), labels, per_label)
        return classifier, None
    counts = classifier.count_pieces(texts)
    fit = pieces_within(counts, labels, per_label, classifier.max_pieces)
    if fit is None:  # not even the first pieces fit: refused, naming what to lower
        check_classify_work(len(texts), labels, per_label)
    note = None
    if fit < max(counts):
        classifier = dataclasses.replace(classifier, max_pieces=fit)
        note = (f"{sum(c > fit for c in counts)} long text(s) were each read to {classifier.reads()} ({fit} "
                f"piece(s)) to stay within the per-request limit; classify fewer texts at once to read them whole.")
        counts = [min(c, fit) for c in counts]
    check_classify_work(len(texts), labels, per_label, pieces=sum(counts))
    return classifier, note


def results_frame(texts: list[str], predictions, truth: list[str] | None, short: bool) -> pd.DataFrame:
    """One row per text: prediction, probabilities, log-likelihoods when the classifier has them (and the true label)."""
    labels = list(predictions[0].probabilities) if predictions else []
    records = []
    for i, (text, pred) in enumerate(zip(texts, predictions)):
        shown = text if not short or len(text) <= 60 else text[:57] + "..."
        record = {"#": i + 1, "text": shown, "prediction": pred.label}
        record.update({f"p({label})": round(pred.probabilities[label], 4) for label in labels})
        if pred.log_likelihoods:  # generative classifiers only
            name = "log p | {}" if short else "log p(text | {})"  # short headers on screen, explicit ones in the CSV
            record.update({name.format(label): round(pred.log_likelihoods[label], 2) for label in labels})
        if truth is not None:
            record["true label"] = truth[i]
            record["correct"] = "✓" if truth[i].strip().casefold() == pred.label.casefold() else "✗"
        records.append(record)
    return pd.DataFrame(records)


FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")  # a spreadsheet runs a cell starting so as a formula (a tab or
# carriage return it strips, and reads on)


def spreadsheet_safe(frame: pd.DataFrame) -> pd.DataFrame:
    """The results for the CSV download: a text cell that a spreadsheet would run as a formula ("=1+1",
    "@SUM(A1)", "-2+3") gets a leading ' (OWASP's advice against CSV injection), so that it is read as text.
    Numbers stay numbers; the table on the page keeps the text as it is."""
    return frame.map(lambda cell: "'" + cell if isinstance(cell, str) and cell.startswith(FORMULA_STARTS) else cell)


def token_highlights(prediction) -> list[tuple[str, float]]:
    """(token, score in [-1, 1]) for gr.HighlightedText: > 0 favours the prediction over the runner-up."""
    contributions = prediction.contributions
    scale = max((abs(c) for c in contributions), default=0.0) or 1.0
    return [(token, round(c / scale, 3)) for token, c in zip(prediction.tokens, contributions)]


def inspect_upload(file: str | None):
    """When a file arrives: fill the column choosers (or hide them for .txt) and say what is in it."""
    if not file:
        return gr.Dropdown(visible=False), gr.Dropdown(visible=False), ""
    try:
        table = read_table(file, MAX_UPLOAD_BYTES)
    except (ValueError, OSError) as error:  # a toast, and the reason stays beside the file
        ui_warning(str(error))
        return gr.Dropdown(visible=False), gr.Dropdown(visible=False), f"⚠️ {html.escape(str(error), quote=False)}"
    if table.columns == ["text"] and Path(file).suffix.lower() == ".txt":
        return (gr.Dropdown(choices=["text"], value="text", visible=False), gr.Dropdown(choices=[""], value="", visible=False),
                f"{len(table.rows):,} texts, one per line. The file is classified instead of the pasted texts.")
    text_column = guess_text_column(table)
    if text_column is None:
        ui_warning(f"{table.name} has no column of text (every column holds numbers); choose one to use anyway.")
    label_column = guess_label_column(table)
    choices = table.columns
    return (
        gr.Dropdown(choices=choices, value=text_column or choices[0], visible=True),
        gr.Dropdown(choices=[("(none)", "")] + [(c, c) for c in choices], value=label_column or "", visible=True),
        f"{len(table.rows):,} rows; columns: {', '.join(html.escape(c) for c in table.columns)}. "
        "The file is classified instead of the pasted texts.",
    )


@gpu
def classify(
    text: str = "",
    file: str | None = None,
    text_column: str | None = None,
    label_column: str | None = None,
    labels: str = DEFAULT_LABELS,
    label_prompt: str = DEFAULT_LABEL_PROMPT,
    samples: int = 32,
    mode: str = TRAINED,
    progress=gr.Progress(),
):
    """Classify pasted lines or an uploaded file with the trained classifier or zero-shot (API /classify).

    `labels` and `label_prompt` apply in zero-shot mode only; the trained classifier has its own labels.
    `samples`: mask patterns per text (zero-shot), or the trained classifier's cap on them.
    """
    try:
        if mode not in (TRAINED, ZERO_SHOT):
            raise ValueError(f"unknown classifier mode {mode!r}; choose {TRAINED!r} or {ZERO_SHOT!r}")
        for value, name in ((text, "text"), (labels, "labels"), (label_prompt, "label prompt"),
                            (text_column, "text column"), (label_column, "label column")):
            if isinstance(value, str):
                check_text(value, name)
        if mode == ZERO_SHOT:
            names, prompts = parse_labels(labels, label_prompt)
        samples = in_range(as_int(samples, "samples"), "samples", 2, MAX_CLASSIFY_SAMPLES)
        notes: list[str] = []
        if file:
            table = read_table(file, MAX_UPLOAD_BYTES)
            texts, truth, notes = select_texts(table, text_column or None, label_column or None, MAX_ROWS)
        else:
            if len(text or "") > MAX_ROWS * 2_000:
                raise ValueError(f"the text is too long; paste at most {MAX_ROWS} lines")
            texts = [line.strip() for line in (text or "").splitlines() if line.strip()]
            truth = None
            if not texts:
                raise ValueError("nothing to classify: paste one text per line, or upload a .txt or .csv file")
            if len(texts) > MAX_ROWS:
                notes.append(f"{len(texts):,} lines pasted; the first {MAX_ROWS} were classified (the limit per request).")
                texts = texts[:MAX_ROWS]
    except (ValueError, OSError) as error:
        raise ui_error(error) from None
    if mode == TRAINED:
        trained = classifier_or_error()
        classifier = make_classifier(TRAINED, samples, trained=trained.classifier)
        names = list(classifier.labels)
    else:
        lm = model_or_error(DIFFUSION)
        classifier = make_classifier(ZERO_SHOT, samples, lm=lm, labels=names, prompts=prompts)
    try:
        classifier, reading = fit_work(classifier, texts, samples)
    except ValueError as error:
        raise ui_error(error) from None
    for note in notes + ([reading] if reading else []):
        ui_warning(note)
    try:
        predictions = []
        for one in progress.tqdm(texts, desc="classifying"):  # one at a time, so the bar moves
            predictions += classifier.classify([one])
            # a generator: Gradio drops it at its next yield once the client has gone or pressed Stop, so an
            # abandoned request stops within one text instead of running on for minutes
            yield (gr.skip(),) * OUTPUTS
    except ValueError as error:
        raise ui_error(error) from None
    truncated = sum(p.truncated for p in predictions)
    with request_folder() as folder:
        csv_path = folder / "classified.csv"
        spreadsheet_safe(results_frame(texts, predictions, truth, short=False)).to_csv(csv_path, index=False)
    nfe = sum(p.nfe for p in predictions)
    passes = f"{nfe:,} forward pass{'es' if nfe != 1 else ''}"
    if mode == TRAINED:
        summary = [f"**{len(texts)}** text(s) classified by the trained classifier "
                   f"`{html.escape(display_name(trained.source))}` ({describe_classifier(trained, samples)}; "
                   f"{calibration_note(trained)}; {passes})."]
    else:
        how = f"ELBO, {samples} shared mask patterns per label" if lm.kind == "masked" else "exact likelihood"
        summary = [f"**{len(texts)}** text(s) classified zero-shot by `{html.escape(display_name(lm.source))}` "
                   f"({how}; {passes})."]
    if truncated:
        summary.append(f"{truncated} long text(s) were cut: each read to {classifier.reads()}.")
    confusion = gr.Dataframe(visible=False)
    if truth is not None:
        evaluation = evaluate([p.label for p in predictions], truth, names)
        if evaluation.unknown:
            odd = sorted(set(evaluation.unknown))[:5]
            ui_warning(f"{len(evaluation.unknown)} row(s) have labels that are not classes ({odd}); "
                       f"they are left out of the accuracy.")
        if evaluation.total:
            low, high = wilson_interval(evaluation.correct, evaluation.total)
            summary.append(f"**Accuracy {evaluation.accuracy:.1%}** ({evaluation.correct}/{evaluation.total}; "
                           f"95% interval {low:.0%}–{high:.0%}). Confusion matrix below.")
            matrix = pd.DataFrame([[t] + row for t, row in zip(names, evaluation.confusion)],
                                  columns=["true ↓ / predicted →"] + names)
            confusion = gr.Dataframe(value=matrix, visible=True)
    first = predictions[0]
    yield (
        {label: p for label, p in first.probabilities.items()},
        gr.HighlightedText(value=token_highlights(first), label=explain_label(1, first)),
        results_frame(texts, predictions, truth, short=True),
        str(csv_path),
        "\n\n".join(summary),
        confusion,
        [prediction_state(p) for p in predictions],
    )


def prediction_state(prediction) -> dict:
    return {"label": prediction.label, "runner_up": prediction.runner_up, "probabilities": prediction.probabilities,
            "tokens": prediction.tokens, "contributions": prediction.contributions}


def explain_label(row: int, prediction) -> str:
    return f"Text {row}: red tokens favour “{prediction.label}”, purple ones “{prediction.runner_up}”"


def explain_row(predictions: list[dict] | None, event: gr.SelectData):
    """Show the probabilities and token highlights of the clicked row."""
    if not predictions or event is None or event.index is None:
        return gr.skip(), gr.skip()
    row = event.index[0] if isinstance(event.index, (list, tuple)) else event.index
    if not 0 <= row < len(predictions):
        return gr.skip(), gr.skip()
    p = _PredictionView(**predictions[row])
    return p.probabilities, gr.HighlightedText(value=token_highlights(p), label=explain_label(row + 1, p))


@dataclass
class _PredictionView:
    label: str
    runner_up: str
    probabilities: dict
    tokens: list
    contributions: list


def classifier_info(mode: str = TRAINED) -> str:
    """The Classify tab's line about the classifier in use (no loading: the header's page-load does that)."""
    if mode == ZERO_SHOT:
        return ("Zero-shot: the diffusion model scores each text after each label's prompt; "
                "the labels and the prompt are yours to choose.")
    trained = models.MODELS.loaded_classifier()
    name = html.escape(display_name(models.MODELS.source(CLASSIFIER)))
    if trained is None:
        return (f"Trained classifier `{name}`: not loaded; it is still loading, or it could not be (the line at the "
                "top of the page says why). Zero-shot works without it.")
    labels = ", ".join(f"“{html.escape(label)}”" for label in trained.classifier.labels)
    return f"Trained classifier `{name}`: {describe_classifier(trained)}. Labels: {labels}."


def switch_classifier(mode: str):
    """Trained vs zero-shot: the label fields only mean something zero-shot; the samples slider changes meaning."""
    zero_shot = mode == ZERO_SHOT
    if zero_shot:
        samples = Slider(label="Mask samples per label", info="the same masks for every label; more: steadier, slower")
    else:
        samples = Slider(label="Most mask samples per text", info="the classifier stops earlier once the top class is clear")
    return (classifier_info(mode), gr.Textbox(visible=zero_shot), gr.Textbox(visible=zero_shot), samples)


CLASSIFY_HELP = """
**How it decides (trained).** The trained classifier is *generative*: it models each class's texts
rather than drawing a boundary between them. In the per-class design one small masked-diffusion model
is trained on each class's texts (in the conditional design, one model learns text after a class
prompt). For a text x, each class's model estimates log p(x | class) by its ELBO, a Monte-Carlo
average over random masks, with the *same* masks for every class (common random numbers), so most
of the Monte-Carlo noise cancels in the differences that decide. Bayes' rule with the training
set's class frequencies as priors turns the scores into p(class | x). Masks are drawn a few at a time,
and a text stops as soon as its top class leads the runner-up by a set number of standard errors, or
at the cap the samples slider sets: clear texts are cheap, close calls get more samples. A long text
is read whole, as consecutive pieces of 128 tokens (up to the classifier's limit, 1,024 tokens for the
bundled one) whose log-likelihoods add. Finally a temperature, fitted on held-out validation texts
(temperature scaling) and growing with the text's length (score gaps add over its tokens), softens the
probabilities so that they match how often the classifier is right. How accurate it is: see its card
(under *Model cards*) and the validation figures there; measure it on your own labelled .csv here.

**Zero-shot.** No training for the task: each text is scored by the general diffusion model after
each label's prompt (e.g. “A positive review:”), the ELBO again with shared masks, and Bayes' rule
with equal priors. A small model trained on prose is a weak zero-shot classifier: read the accuracy
before trusting it.

**Highlights.** The ELBO is a sum over tokens, so the log-odds of the predicted label against the
runner-up split exactly into per-token parts: red tokens pushed towards the prediction, purple ones
against it (scaled to the strongest token). Click a row of the table to explain that text. (For a
discriminative classifier, the parts are gradient × input, an approximation.)
"""


def build() -> gr.Radio:
    """Lay out the tab and wire its events; call inside `with gr.Tab(...)`. Returns the classifier
    choice, whose line about the classifier the page load fills in."""
    gr.Markdown("**Trained**: the classifier named below, trained on labelled texts; by default generative, "
                "a small diffusion model per class, and Bayes' rule turns how likely each class's model finds "
                "a text into probabilities. "
                "**Zero-shot**: the diffusion model's likelihood of the text after each label's prompt, "
                "with labels you choose. Details under *How this works*.", elem_classes="stats")
    with gr.Row():
        with gr.Column():
            paste = gr.Textbox(label="Texts, one per line", lines=5, elem_id="classify-text",
                               value="A gripping, beautifully acted film.\nDull, slow and far too long.")
            upload = File(label=f"…or upload a .txt (one text per line) or .csv (max {MAX_UPLOAD_MB} MB, "
                          f"first {MAX_ROWS} rows)", file_types=[".txt", ".csv"], elem_id="upload")
            upload_info = gr.Markdown(elem_classes="stats", elem_id="upload-info")
            with gr.Row():
                # custom values let API callers name a column; the handler checks it against the file
                text_column = gr.Dropdown(label="Text column", visible=False, allow_custom_value=True)
                label_column = gr.Dropdown(label="Label column (for accuracy)", visible=False,
                                           allow_custom_value=True)
        with gr.Column():
            mode = gr.Radio([("Trained", TRAINED), ("Zero-shot", ZERO_SHOT)], value=TRAINED,
                            label="Classifier", elem_id="classifier-mode")
            info = gr.Markdown("The trained classifier loads with the page…", elem_classes="stats",
                               elem_id="classifier-info")
            labels = gr.Textbox(value=DEFAULT_LABELS, label="Labels (comma-separated)", visible=False)
            label_prompt = gr.Textbox(value=DEFAULT_LABEL_PROMPT, label="Label prompt", visible=False,
                                      info="each text is scored after this prompt, once per label")
            samples = Slider(4, MAX_CLASSIFY_SAMPLES, value=32, step=4, label="Most mask samples per text",
                             info="the classifier stops earlier once the top class is clear")
            with gr.Row():
                button = gr.Button("Classify", variant="primary", elem_id="classify-button")
                stop = gr.Button("Stop", variant="stop", elem_id="classify-stop")
    summary = gr.Markdown("No texts classified yet: paste some or upload a file, then press **Classify**.",
                          elem_id="classify-summary")
    with gr.Row():
        probabilities = gr.Label(label="Probabilities (first text, or the row you click)", num_top_classes=MAX_LABELS)
        explanation = gr.HighlightedText(label="What drives the decision", show_legend=True,
                                         show_inline_category=False, elem_classes="canvas", elem_id="explanation")
    results = gr.Dataframe(EMPTY_RESULTS, label="Results (click a row to explain it; log p in nats)", interactive=False,
                           wrap=False, max_height=420, elem_id="results")
    with gr.Row():
        confusion = gr.Dataframe(label="Confusion matrix", interactive=False, visible=False)
        results_csv = gr.File(label="Results as CSV", interactive=False, elem_id="results-csv")
    predictions = gr.State(None, time_to_live=STATE_TTL_SECONDS)
    with gr.Accordion("How this works", open=False):
        gr.Markdown(CLASSIFY_HELP)

    upload.upload(inspect_upload, upload, [text_column, label_column, upload_info], api_visibility="private")
    upload.clear(lambda: (gr.Dropdown(visible=False), gr.Dropdown(visible=False), ""), None,
                 [text_column, label_column, upload_info], api_visibility="private", queue=False)
    mode.change(switch_classifier, mode, [info, labels, label_prompt, samples], api_visibility="private", queue=False)
    event = button.click(classify, inputs=[paste, upload, text_column, label_column, labels, label_prompt, samples,
                                           mode],
                         outputs=[probabilities, explanation, results, results_csv, summary, confusion, predictions],
                         api_name="classify", concurrency_id="model")
    stop.click(None, cancels=[event], api_visibility="private")
    results.select(explain_row, predictions, [probabilities, explanation], api_visibility="private")
    return mode, info
