// The trace player: reads the JSON that dlm.render.player embeds in the page and animates it.
// Trace text is only ever set with textContent, never parsed as HTML.
"use strict";
(() => {
  const data = JSON.parse(document.getElementById("trace-data").textContent);
  const player = document.getElementById("player");
  const scrub = document.getElementById("scrub");
  const playButton = document.getElementById("play");
  const clock = document.getElementById("clock");
  const speedSelect = document.getElementById("speed");
  const confidenceToggle = document.getElementById("confidence");

  const last = data.ticks.length - 1;
  let tick = last; // index into data.ticks: [clock or step, frame of pane 0, frame of pane 1, ...]
  let timer = null; // pending setTimeout while playing
  let speed = Number(speedSelect.value);
  let pinned = null; // {view, column} of the clicked token, whose details follow the steps

  const views = Array.from(document.querySelectorAll(".pane"), (element, index) =>
    makeView(data.panes[index], element));

  // One pane: a span per visible canvas position, built once and updated on every frame.
  function makeView(pane, element) {
    const view = {
      pane,
      frame: 0,
      spans: [],
      counter: element.querySelector(".counter"),
      percent: element.querySelector(".percent"),
      fill: element.querySelector(".fill"),
      details: element.querySelector(".details"),
    };
    const canvas = element.querySelector(".canvas");
    pane.positions.forEach((position, column) => {
      const span = document.createElement("span");
      span.addEventListener("mouseenter", () => showDetails(view, column));
      span.addEventListener("click", () => pin(view, column));
      canvas.appendChild(span);
      view.spans.push(span);
    });
    return view;
  }

  // The label of a column in a frame, for one colouring mode ("plain" where it has none).
  function labelOf(frame, mode, column) {
    return data.labels[mode][frame.labels[mode][column]] ?? "plain";
  }

  // A decided column's text: its token's piece, unless the frame shows a character split over tokens there.
  function textOf(pane, frame, column) {
    return frame.text?.[column] ?? pane.pieces[frame.canvas[column]];
  }

  function renderView(view, frameIndex) {
    view.frame = frameIndex;
    const pane = view.pane;
    const frame = pane.frames[frameIndex];
    view.spans.forEach((span, column) => {
      const state = labelOf(frame, "state", column);
      span.className = `tok state-${state} confidence-${labelOf(frame, "confidence", column)}`;
      span.classList.toggle("pinned", pinned !== null && pinned.view === view && pinned.column === column);
      span.textContent = state === "masked" ? "" : textOf(pane, frame, column);
    });
    const steps = pane.frames.length - 1;
    view.counter.textContent = `step ${frameIndex}/${steps} · NFE ${frame.nfe} · ${frame.elapsed.toFixed(2)} s`;
    view.percent.textContent = `${Math.round(frame.progress * 100)}% decided`;
    view.fill.style.width = `${frame.progress * 100}%`;
  }

  // What the model thought of one position at the pane's current frame.
  function showDetails(view, column) {
    const pane = view.pane;
    const frame = pane.frames[view.frame];
    const state = labelOf(frame, "state", column);
    const parts = [`position ${pane.positions[column]}`];
    if (state === "masked") {
      parts.push("undecided");
    } else {
      const token = JSON.stringify(textOf(pane, frame, column)); // quotes show leading spaces
      parts.push(state === "plain" ? token : `${token} (${state})`);
    }
    const guess = frame.guess[column];
    parts.push(guess >= 0
      ? `guess ${JSON.stringify(pane.pieces[guess])} · p = ${frame.confidence[column].toFixed(3)}`
      : "no guess at this step");
    view.details.textContent = parts.join(" · ");
  }

  function pin(view, column) {
    pinned = { view, column };
    views.forEach((other) => other.spans.forEach((span, index) =>
      span.classList.toggle("pinned", other === view && index === column)));
    showDetails(view, column);
  }

  function goTo(index) {
    tick = Math.max(0, Math.min(last, index));
    const row = data.ticks[tick];
    views.forEach((view, pane) => renderView(view, row[pane + 1]));
    scrub.value = String(tick);
    clock.textContent = data.align === "time" ? `t = ${row[0].toFixed(2)} s` : `step ${tick}/${last}`;
    if (pinned !== null) showDetails(pinned.view, pinned.column);
  }

  // Milliseconds from tick j to the next at 1x: real time in a time-aligned race, else a fixed beat.
  function delay(j) {
    return data.align === "time" ? (data.ticks[j + 1][0] - data.ticks[j][0]) * 1000 : data.frameMs;
  }

  function scheduleNext() {
    if (tick >= last) {
      pause();
      return;
    }
    timer = setTimeout(() => {
      goTo(tick + 1);
      scheduleNext();
    }, delay(tick) / speed);
  }

  function play() {
    if (tick >= last) goTo(0); // replay from the start
    playButton.textContent = "Pause";
    scheduleNext();
  }

  function pause() {
    clearTimeout(timer);
    timer = null;
    playButton.textContent = "Play";
  }

  const togglePlay = () => (timer === null ? play() : pause());
  const stepBy = (delta) => { pause(); goTo(tick + delta); };
  const jumpTo = (index) => { pause(); goTo(index); };

  playButton.addEventListener("click", togglePlay);
  document.getElementById("prev").addEventListener("click", () => stepBy(-1));
  document.getElementById("next").addEventListener("click", () => stepBy(1));
  scrub.addEventListener("input", () => goTo(Number(scrub.value)));
  speedSelect.addEventListener("change", () => { speed = Number(speedSelect.value); });
  confidenceToggle.addEventListener("change", () => {
    player.classList.toggle("mode-confidence", confidenceToggle.checked);
    player.classList.toggle("mode-state", !confidenceToggle.checked);
  });

  const keys = { " ": togglePlay, ArrowLeft: () => stepBy(-1), ArrowRight: () => stepBy(1),
                 Home: () => jumpTo(0), End: () => jumpTo(last) };
  document.addEventListener("keydown", (event) => {
    const action = keys[event.key];
    const target = event.target;
    if (!action || event.altKey || event.ctrlKey || event.metaKey) return;
    const onSlider = target.matches('input[type="range"]');
    if (onSlider && event.key !== " ") return; // the slider moves itself and fires "input"
    if (!onSlider && target.closest("input, select, textarea")) return; // leave form controls their keys
    if (event.key === " " && target.closest("button")) return; // a focused button clicks itself
    event.preventDefault();
    action();
  });

  goTo(last); // open on the finished run; Play replays it from the start
})();
