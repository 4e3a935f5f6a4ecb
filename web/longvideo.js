// Draws, on the Diagonal Queue Sampler and Progressive AR Sampler nodes, the queue or window that
// the current widget values give, and a filmstrip of the frames that leave it during a run.
// The layout itself comes from the pack's GET /longvideo/layout (computed by the samplers' own
// Python code); nothing of the schedules is re-implemented here.
//
// With Wan 2.2 Experts on the sampler's `experts` input, a band under the slots shows which expert
// denoises each one. A slot's expert follows from its noise level, so the query also carries what
// the SIGMAS are made of (the experts' boundary, the BasicScheduler's widgets, the shift of the
// ModelSamplingSD3 node in front of the scheduler's model), and the server computes them with
// ComfyUI's own nodes.
//
// The drawing is a canvas widget, which both renderers show: the classic canvas calls its draw()
// on every frame it paints, the Vue ("Nodes 2.0") renderer only when the widget is mounted or
// resized, when a widget of the same node changes, and when the widget's triggerDraw() is called.
import { app } from "../../scripts/app.js";
import { api } from "../../scripts/api.js";

const QUEUE_SAMPLER = "LongVideoDiagonalQueueSampler";
const WINDOW_SAMPLER = "LongVideoProgressiveARSampler";
const EXPERTS_NODE = "LongVideoWanExperts";
const FETCH_DELAY_MS = 150;
const CHECK_INTERVAL_MS = 250;
const FILMSTRIP_FRAMES = 6;
const LAYOUT_WIDGET = "longvideo_layout";

const MARGIN = 12;
const HEADER = 16;
const BARS = 40;
const EXPERT_BAND = 6;
const GROUP_LABELS = 12;
const WINDOW_ROW = 7;
const TEXT_LINE = 13;
const WARNING_LINES = 5;
const FILMSTRIP = 56;
const AREA_HEIGHT = HEADER + BARS + EXPERT_BAND + GROUP_LABELS + 2 * WINDOW_ROW + 6 + 3 * TEXT_LINE + WARNING_LINES * TEXT_LINE + FILMSTRIP + 8;

const CLEAN = [76, 175, 80];
const LOW_NOISE = [66, 133, 244];
const HIGH_NOISE = [234, 108, 62];
// the experts, noisiest band first, as the server numbers them
const EXPERTS = [
  { name: "high-noise", colour: [200, 90, 230] },
  { name: "low-noise", colour: [60, 200, 190] },
];

function widgetValue(node, name) {
  return node?.widgets?.find((w) => w.name === name)?.value;
}

function isLinkedWidget(node, name) {
  const slot = node.inputs?.findIndex((input) => input.widget?.name === name) ?? -1;
  return slot >= 0 && node.isInputConnected(slot);
}

function inputNode(node, name) {
  const slot = node.inputs?.findIndex((input) => input.name === name) ?? -1;
  let source = slot < 0 ? null : node.getInputNode(slot);
  // frontend-only Reroute nodes pass the link through
  while (source?.type === "Reroute") source = source.getInputNode(0);
  return source;
}

// Schedulers with a `steps` widget (BasicScheduler, LTXVScheduler, KarrasScheduler, ...) give
// steps + 1 sigmas. A steps value that comes through a link is not known before the run.
function schedulerSteps(node) {
  const scheduler = inputNode(node, "sigmas");
  const stepsSlot = scheduler?.inputs?.findIndex((input) => input.widget?.name === "steps") ?? -1;
  if (stepsSlot >= 0 && scheduler.isInputConnected(stepsSlot)) return null;
  const steps = widgetValue(scheduler, "steps");
  return typeof steps === "number" ? steps : null;
}

// The option chain runs upstream from the sampler; like the Python nodes, the option node nearest
// to the sampler wins.
function queueOptions(node) {
  const options = { partitions: 1, lookahead: false, frames_per_level: 1 };
  const seen = { partitions: false, lookahead: false, frames_per_level: false };
  for (let source = inputNode(node, "options"); source; source = inputNode(source, "options")) {
    if (source.type === "LongVideoLatentPartition" && !seen.partitions && !source.mode) {
      options.partitions = widgetValue(source, "partitions");
      seen.partitions = true;
    }
    if (source.type === "LongVideoLookahead" && !seen.lookahead && !source.mode) {
      options.lookahead = Boolean(widgetValue(source, "enabled"));
      seen.lookahead = true;
    }
    if (source.type === "LongVideoFewStepQueue" && !seen.frames_per_level && !source.mode) {
      options.frames_per_level = widgetValue(source, "frames_per_level");
      seen.frames_per_level = true;
    }
  }
  return options;
}

// A Reference Anchor linked to the sampler (and not bypassed) shows one clean frame in front of every window.
function referenceFrames(node) {
  const anchor = inputNode(node, "anchor");
  return anchor?.type === "LongVideoReferenceAnchor" && !anchor.mode ? 1 : 0;
}

// The file name of the model loaded upstream of a model input (Load Diffusion Model, a checkpoint
// loader), through the nodes that patch the model.
function modelFileName(node, input) {
  for (let source = inputNode(node, input); source; source = inputNode(source, "model")) {
    const name = widgetValue(source, "unet_name") ?? widgetValue(source, "ckpt_name");
    if (typeof name === "string") return name;
  }
  return null;
}

// Boundary 0 is Wan 2.2's own for the experts' task, which Wan 2.2 Experts reads from the model;
// the editor has only the high-noise model's file name (Comfy-Org's say t2v or i2v).
function autoTask(experts) {
  const name = modelFileName(experts, "high_noise_model") ?? "";
  if (/i2v/i.test(name)) return { task: "image_to_video", note: "auto: image-to-video, from the model's file name" };
  if (/t2v/i.test(name)) return { task: "text_to_video", note: "auto: text-to-video, from the model's file name" };
  return { task: "text_to_video", note: "auto: text-to-video assumed, the model's file name does not say" };
}

// Wan 2.2 Experts on the sampler: null without them, else { values } for the query with a note
// for the legend, or { unknown } saying why the editor cannot know the slots' experts.
function expertsRequest(node) {
  const experts = inputNode(node, "experts");
  if (experts?.type !== EXPERTS_NODE || experts.mode) return null;
  if (isLinkedWidget(experts, "boundary")) return { unknown: "the Wan 2.2 Experts boundary comes through a link" };
  const scheduler = inputNode(node, "sigmas");
  if (scheduler?.type !== "BasicScheduler" || scheduler.mode) return { unknown: "the sampler's SIGMAS do not come from a BasicScheduler" };
  const linked = ["scheduler", "steps", "denoise"].find((name) => isLinkedWidget(scheduler, name));
  if (linked) return { unknown: `the BasicScheduler's ${linked} comes through a link` };
  const values = { boundary: widgetValue(experts, "boundary"), scheduler: widgetValue(scheduler, "scheduler"), denoise: widgetValue(scheduler, "denoise") };
  // the nearest enabled ModelSamplingSD3 sets the shift; without one the model keeps Wan's own
  for (let source = inputNode(scheduler, "model"); source; source = inputNode(source, "model")) {
    if (source.mode) continue;
    if (source.type === "ModelSamplingSD3") {
      if (isLinkedWidget(source, "shift")) return { unknown: "the ModelSamplingSD3 shift comes through a link" };
      values.shift = widgetValue(source, "shift");
      break;
    }
    if (source.type.startsWith("ModelSampling")) return { unknown: `the scheduler's model goes through ${source.type}` };
  }
  if (values.boundary !== 0) return { values, note: "" };
  const { task, note } = autoTask(experts);
  return { values: { ...values, task }, note };
}

function layoutQuery(node, experts) {
  const query = { length: widgetValue(node, "length"), reference_frames: referenceFrames(node) };
  if (node.type === QUEUE_SAMPLER) {
    const { partitions, lookahead, frames_per_level } = queueOptions(node);
    Object.assign(query, {
      method: "diagonal_queue",
      window: widgetValue(node, "window"),
      start: widgetValue(node, "start"),
      partitions,
      lookahead,
      frames_per_level,
    });
  } else {
    Object.assign(query, {
      method: "progressive_ar",
      chunk_size: widgetValue(node, "chunk_size"),
      window_chunks: widgetValue(node, "window_chunks"),
    });
  }
  const steps = schedulerSteps(node);
  if (steps != null) query.steps = steps;
  if (experts?.values) Object.assign(query, experts.values);
  return new URLSearchParams(query).toString();
}

// Called on every draw and a few times a second: the values can change on this node or on any
// node linked to it. The classic canvas draws after every change; the Vue renderer draws a node
// only for changes on the node itself, and no event of either frontend follows every change on
// the linked nodes (a value typed into a scheduler, a bypassed option node, a new link).
function refreshLayout(node) {
  const experts = expertsRequest(node);
  const query = layoutQuery(node, experts);
  const expertsNote = experts?.unknown ?? experts?.note ?? null;
  if (query === node.longVideoQuery && expertsNote === node.longVideoExpertsNote) return;
  node.longVideoQuery = query;
  node.longVideoExpertsNote = expertsNote;
  clearTimeout(node.longVideoTimer);
  node.longVideoTimer = setTimeout(() => fetchLayout(node, query, experts), FETCH_DELAY_MS);
}

async function fetchLayout(node, query, experts) {
  let layout;
  try {
    const answer = await api.fetchApi(`/longvideo/layout?${query}`);
    layout = await answer.json();
  } catch (error) {
    layout = { error: `The layout could not be fetched: ${error}` };
  }
  if (query !== node.longVideoQuery) return; // a newer request is on its way
  node.longVideoLayout = layout;
  node.longVideoLayoutQuery = query;
  node.longVideoLayoutExperts = experts;
  redraw(node);
}

function redraw(node) {
  node.setDirtyCanvas(true, false);
  layoutWidget(node)?.triggerDraw?.();
}

function layoutWidget(node) {
  return node.widgets?.find((w) => w.name === LAYOUT_WIDGET);
}

function isSamplerType(type) {
  return type === QUEUE_SAMPLER || type === WINDOW_SAMPLER;
}

function refreshShownSamplers() {
  for (const node of (app.canvas?.graph ?? app.graph)?.nodes ?? []) if (isSamplerType(node.type)) refreshLayout(node);
}

function rgb(colour) {
  return `rgb(${colour.map(Math.round).join(",")})`;
}

function slotColour(stepsLeft, levels) {
  const t = stepsLeft / levels;
  return rgb(stepsLeft === 0 ? CLEAN : LOW_NOISE.map((value, i) => value + (HIGH_NOISE[i] - value) * t));
}

function wrap(ctx, text, width) {
  const lines = [];
  let line = "";
  for (const word of text.split(" ")) {
    const candidate = line ? `${line} ${word}` : word;
    if (line && ctx.measureText(candidate).width > width) {
      lines.push(line);
      line = word;
    } else {
      line = candidate;
    }
  }
  if (line) lines.push(line);
  return lines;
}

function formatCost(layout) {
  const perFrame = Number.isInteger(layout.calls_per_frame) ? layout.calls_per_frame : layout.calls_per_frame.toFixed(2);
  const run = layout.run_calls == null ? "" : ` · run: ${layout.run_calls} calls`;
  const anchor = layout.reference_frames ? ` (${layout.reference_frames} of them the reference anchor)` : "";
  return `${perFrame} model call${perFrame == 1 ? "" : "s"} of ${layout.frames_per_call} frames${anchor} per output latent frame${run}`;
}

function drawSlots(ctx, layout, x, y, width) {
  const slots = layout.steps_left.length;
  const slotWidth = width / slots;
  for (let i = 0; i < slots; i++) {
    const height = Math.max(2, (BARS * layout.steps_left[i]) / layout.levels);
    ctx.fillStyle = slotColour(layout.steps_left[i], layout.levels);
    ctx.fillRect(x + i * slotWidth, y + BARS - height, Math.max(1, slotWidth - (slotWidth > 3 ? 1 : 0)), height);
  }
  // the expert that denoises each slot, in a band under its bar: one rectangle per run of slots
  for (let i = 0, end = 0; layout.expert && i < slots; i = end) {
    for (end = i + 1; end < slots && layout.expert[end] === layout.expert[i]; ) end++;
    if (layout.expert[i] < 0) continue;
    ctx.fillStyle = rgb(EXPERTS[layout.expert[i]].colour);
    ctx.fillRect(x + i * slotWidth, y + BARS + 1, (end - i) * slotWidth, EXPERT_BAND - 2);
  }
  // group boundaries (partitions or chunks) with their numbers
  ctx.strokeStyle = "#ddd";
  ctx.fillStyle = "#bbb";
  ctx.font = "10px sans-serif";
  ctx.textAlign = "center";
  for (let i = 0; i < slots; i++) {
    const group = layout.group[i];
    if (i > 0 && group === layout.group[i - 1]) continue;
    const groupEnd = layout.group.lastIndexOf(group) + 1;
    if (i > 0) {
      ctx.beginPath();
      ctx.moveTo(x + i * slotWidth, y - 2);
      ctx.lineTo(x + i * slotWidth, y + BARS + 2);
      ctx.stroke();
    }
    const label = group < 0 ? "clean" : `${layout.group_name[0].toUpperCase()}${group + 1}`;
    if ((groupEnd - i) * slotWidth > ctx.measureText(label).width) {
      ctx.fillText(label, x + ((i + groupEnd) / 2) * slotWidth, y + BARS + EXPERT_BAND + GROUP_LABELS - 2);
    }
  }
  return slotWidth;
}

function drawWindows(ctx, layout, x, y, slotWidth) {
  // overlapping windows (lookahead, the experts' split) alternate between two rows: a thin line
  // over the slots a window reads, a thick one over those it writes
  layout.windows.forEach((w, k) => {
    const rowY = y + (k % 2) * WINDOW_ROW;
    ctx.fillStyle = "rgba(200,200,200,0.6)";
    ctx.fillRect(x + w.start * slotWidth, rowY + 2, (w.stop - w.start) * slotWidth, 2);
    ctx.fillStyle = k % 2 ? "#e0c050" : "#f0f0f0";
    ctx.fillRect(x + w.write_start * slotWidth, rowY + 1, (w.write_stop - w.write_start) * slotWidth - 1, 4);
  });
}

// One line of text in parts of their own colours, narrowed as a whole to the width.
function fillParts(ctx, parts, x, y, width) {
  const widths = parts.map(([text]) => ctx.measureText(text).width);
  const scale = Math.min(1, width / widths.reduce((sum, w) => sum + w, 0));
  parts.forEach(([text, colour], i) => {
    ctx.fillStyle = colour;
    ctx.fillText(text, x, y, widths[i] * scale);
    x += widths[i] * scale;
  });
}

// "high-noise expert: 23 slots · low-noise: 19", each in its expert's colour
function expertsLegend(layout) {
  const parts = EXPERTS.map(({ name, colour }, e) => {
    const count = layout.expert.filter((slotExpert) => slotExpert === e).length;
    return [e === 0 ? `${name} expert: ${count} slots` : `${name}: ${count}`, rgb(colour)];
  });
  return [parts[0], [" · ", "#ccc"], parts[1]];
}

// "boundary 0.875 (auto: text-to-video, from the model's file name) · shift 8 · simple"
function expertsSchedule(node, layout) {
  const { boundary, shift, scheduler } = layout.expert_schedule;
  const note = node.longVideoLayoutExperts.note;
  const ownShift = new URLSearchParams(node.longVideoLayoutQuery).has("shift") ? "" : " (Wan's own)";
  return `boundary ${boundary}${note ? ` (${note})` : ""} · shift ${shift}${ownShift} · ${scheduler}`;
}

// Why the experts are not drawn, where they are connected: the server's answer or the editor's own reason.
function expertsProblem(node, layout) {
  const experts = node.longVideoLayoutExperts;
  if (!experts || layout.expert) return null;
  return experts.unknown ? `Which expert serves each slot is not known: ${experts.unknown}.` : layout.expert_warning;
}

function drawFilmstrip(ctx, node, x, y, width) {
  const frames = node.longVideoPreviews ?? [];
  ctx.strokeStyle = "#555";
  ctx.strokeRect(x, y, width, FILMSTRIP - 4);
  if (!frames.length) {
    ctx.fillStyle = "#888";
    ctx.textAlign = "center";
    ctx.fillText("frames leaving the sampler appear here during a run", x + width / 2, y + FILMSTRIP / 2, width - 8);
    return;
  }
  const cell = width / FILMSTRIP_FRAMES;
  frames.forEach((frame, i) => {
    if (!frame.image.complete || !frame.image.naturalWidth) return;
    const scale = Math.min((cell - 4) / frame.image.naturalWidth, (FILMSTRIP - 8) / frame.image.naturalHeight);
    const w = frame.image.naturalWidth * scale;
    const h = frame.image.naturalHeight * scale;
    ctx.drawImage(frame.image, x + i * cell + (cell - w) / 2, y + (FILMSTRIP - 4 - h) / 2, w, h);
  });
}

function drawLayout(ctx, node, widgetWidth, top) {
  refreshLayout(node);
  const layout = node.longVideoLayout;
  const x = MARGIN;
  const width = widgetWidth - 2 * MARGIN;
  ctx.save();
  ctx.font = "11px sans-serif";
  ctx.textAlign = "left";
  ctx.fillStyle = "#ccc";
  let y = top + 11;
  if (!layout) {
    ctx.fillText("layout: loading...", x, y);
  } else if (layout.error) {
    ctx.fillStyle = "#ff7070";
    wrap(ctx, layout.error, width).slice(0, WARNING_LINES + 2).forEach((line, i) => ctx.fillText(line, x, y + i * TEXT_LINE));
  } else {
    const what = layout.method === "diagonal_queue" ? "queue" : "window";
    const groups = new Set(layout.group.filter((g) => g >= 0)).size;
    const lookahead = layout.method === "diagonal_queue" && layout.context_slots ? ", lookahead" : "";
    // one-line texts are narrowed to the width rather than cut off (under the Vue renderer the
    // widget is narrower than the node)
    ctx.fillText(`${what}: ${layout.steps_left.length} slots, ${layout.levels} noise levels, ${groups} ${layout.group_name}s${lookahead}`, x, y, width);
    y = top + HEADER;
    const slotWidth = drawSlots(ctx, layout, x, y, width);
    y += BARS + EXPERT_BAND + GROUP_LABELS;
    drawWindows(ctx, layout, x, y, slotWidth);
    y += 2 * WINDOW_ROW + 6 + 9;
    ctx.font = "11px sans-serif";
    ctx.textAlign = "left";
    ctx.fillStyle = "#ccc";
    ctx.fillText(formatCost(layout), x, y, width);
    y += TEXT_LINE;
    const steps = layout.steps == null ? "not known (no steps widget on the linked scheduler)" : String(layout.steps);
    if (layout.steps_warning) ctx.fillStyle = "#ff7070";
    ctx.fillText(`scheduler steps: ${steps}; needed: ${layout.steps_needed}`, x, y, width);
    const expertsWarning = expertsProblem(node, layout);
    if (layout.expert) {
      fillParts(ctx, expertsLegend(layout), x, y + TEXT_LINE, width);
      ctx.fillStyle = "#ccc";
      wrap(ctx, expertsSchedule(node, layout), width).slice(0, WARNING_LINES).forEach((line, i) => ctx.fillText(line, x, y + (i + 2) * TEXT_LINE));
    } else if (expertsWarning) {
      ctx.fillStyle = "#ff7070";
      ctx.fillText("experts: not drawn", x, y + TEXT_LINE, width);
    }
    if (node.longVideoLayoutExperts) y += TEXT_LINE;
    const warning = [layout.steps_warning, expertsWarning].filter(Boolean).join(" ");
    if (warning) {
      ctx.fillStyle = "#ff7070";
      const lines = wrap(ctx, warning, width);
      if (lines.length > WARNING_LINES) lines.splice(WARNING_LINES - 1, Infinity, `${lines[WARNING_LINES - 1]}…`);
      lines.forEach((line, i) => ctx.fillText(line, x, y + (i + 1) * TEXT_LINE));
    }
  }
  drawFilmstrip(ctx, node, x, top + AREA_HEIGHT - FILMSTRIP, width);
  ctx.restore();
}

function addLayoutWidget(node) {
  node.addCustomWidget({
    name: LAYOUT_WIDGET,
    type: LAYOUT_WIDGET,
    value: null,
    serialize: false,
    options: { serialize: false },
    draw(ctx, drawnNode, widgetWidth, y) {
      drawLayout(ctx, drawnNode, widgetWidth, y);
    },
    computeSize(width) {
      return [width ?? 0, AREA_HEIGHT];
    },
  });
}

function fitContent(node) {
  const needed = node.computeSize();
  node.setSize([Math.max(node.size[0], needed[0]), Math.max(node.size[1], needed[1])]);
}

// Preview ids are execution ids: "node" at the top level, "subgraph node:...:node" inside subgraphs.
function nodeOfExecutionId(executionId) {
  const path = String(executionId).split(":");
  let graph = app.rootGraph ?? app.graph;
  for (const id of path.slice(0, -1)) graph = graph?.getNodeById(id)?.subgraph;
  return graph?.getNodeById(path[path.length - 1]);
}

// The preview's run is `jobId` in current frontends and `promptId` in older ones.
function addPreview({ detail }) {
  const node = nodeOfExecutionId(detail.displayNodeId ?? detail.nodeId);
  if (!isSamplerType(node?.type)) return;
  const run = detail.jobId ?? detail.promptId;
  if (!node.longVideoPreviews || node.longVideoPreviewRun !== run) {
    node.longVideoPreviews?.forEach((frame) => URL.revokeObjectURL(frame.image.src));
    node.longVideoPreviews = [];
    node.longVideoPreviewCount = 0;
    node.longVideoPreviewRun = run;
  }
  const image = new Image();
  image.onload = () => redraw(node);
  image.src = URL.createObjectURL(detail.blob);
  node.longVideoPreviews.push({ image });
  node.longVideoPreviewCount += 1;
  while (node.longVideoPreviews.length > FILMSTRIP_FRAMES) URL.revokeObjectURL(node.longVideoPreviews.shift().image.src);
}

app.registerExtension({
  name: "ComfyUI-LongVideo.Layout",
  setup() {
    api.addEventListener("b_preview_with_metadata", addPreview);
    setInterval(refreshShownSamplers, CHECK_INTERVAL_MS);
  },
  async beforeRegisterNodeDef(nodeType, nodeData) {
    if (!isSamplerType(nodeData.name)) return;
    const onNodeCreated = nodeType.prototype.onNodeCreated;
    nodeType.prototype.onNodeCreated = function () {
      const result = onNodeCreated?.apply(this, arguments);
      addLayoutWidget(this);
      fitContent(this);
      return result;
    };
    // a saved workflow brings its own, possibly smaller, node size
    const onConfigure = nodeType.prototype.onConfigure;
    nodeType.prototype.onConfigure = function () {
      const result = onConfigure?.apply(this, arguments);
      fitContent(this);
      return result;
    };
  },
});
