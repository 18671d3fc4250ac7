// The pursuit web chat: a conversation with the agent, its plan as an SVG graph, and sources.
//
// No framework and no build step. Everything the server sends (questions, answers, document
// titles and passages) is put on the page with textContent / text nodes only, never parsed
// as HTML. Answers stream over POST /api/chat as server-sent events, read from fetch()'s body.

const RECENT_KEY = 'pursuit.recent';
const CURRENT_KEY = 'pursuit.current';
const RECENT_MAX = 20;
const SVG_NS = 'http://www.w3.org/2000/svg';
const PHASES = {
  clarify: 'Deciding whether to ask you something first…',
  plan: 'Planning sub-questions…',
  search: 'Searching…',
  review: 'Reviewing what was found…',
  synthesize: 'Writing the answer…',
};
const STATUS_LABEL = { planned: 'planned', searching: 'searching', done: 'done' };

const $ = (selector) => document.querySelector(selector);
const ui = {
  log: $('#log'), empty: $('#empty'), form: $('#composer'), question: $('#question'),
  label: $('#question-label'), send: $('#send'), stop: $('#stop'), asOf: $('#as-of'),
  clarify: $('#clarify'), status: $('#status'), notice: $('#notice'), recent: $('#recent'),
  health: $('#health'), plan: $('#plan'), planList: $('#plan-list'), sources: $('#sources'),
  newChat: $('#new-chat'),
};

const state = { conversationId: null, turns: [], focus: null, running: null, loads: 0, keys: 0 };

// ---- small DOM helpers (text only) -------------------------------------------------------

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue;
    if (key === 'class') node.className = value;
    else if (key === 'text') node.textContent = String(value);
    else if (key.startsWith('on')) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value === true ? '' : String(value));
  }
  for (const child of children) {
    if (child !== null && child !== undefined) node.append(child); // strings become text nodes
  }
  return node;
}

function svg(tag, attrs = {}) {
  const node = document.createElementNS(SVG_NS, tag);
  for (const [key, value] of Object.entries(attrs)) node.setAttribute(key, String(value));
  return node;
}

function announce(text) { ui.status.textContent = text; }

function notice(text) {
  ui.notice.textContent = text;
  ui.notice.hidden = !text;
}

function shortDate(value) {
  if (typeof value !== 'string' || !value) return '';
  return /^\d{4}-\d{2}-\d{2}/.test(value) ? value.slice(0, 10) : value;
}

function clip(text, max) {
  const flat = String(text ?? '').replace(/\s+/g, ' ').trim();
  return flat.length > max ? `${flat.slice(0, max - 1)}…` : flat;
}

// ---- the URL fragment (#token=...&c=...) and recent conversations ------------------------

function hashParams() { return new URLSearchParams(location.hash.slice(1)); }

function hashFor(conversationId) {
  const params = hashParams();
  if (conversationId) params.set('c', conversationId); else params.delete('c');
  const text = params.toString();
  return text ? `#${text}` : location.pathname + location.search;
}

function setHash(conversationId) {
  history.replaceState(null, '', hashFor(conversationId));
  try {
    if (conversationId) localStorage.setItem(CURRENT_KEY, conversationId);
    else localStorage.removeItem(CURRENT_KEY);
  } catch { /* storage may be disabled; the fragment still works */ }
}

function headers(json = true) {
  const out = json ? { 'Content-Type': 'application/json' } : {};
  const token = hashParams().get('token');
  if (token) out.Authorization = `Bearer ${token}`;
  return out;
}

async function errorText(response) {
  try {
    const body = await response.json();
    if (body && typeof body.error === 'string') return body.error;
  } catch { /* not JSON */ }
  if (response.status === 401) return 'this server needs an access token: open the page as /#token=<token>';
  return `the server answered ${response.status} ${response.statusText}`.trim();
}

function loadRecent() {
  try {
    const list = JSON.parse(localStorage.getItem(RECENT_KEY) || '[]');
    return Array.isArray(list) ? list.filter((x) => x && typeof x.id === 'string') : [];
  } catch { return []; }
}

function saveRecent(list) {
  try { localStorage.setItem(RECENT_KEY, JSON.stringify(list.slice(0, RECENT_MAX))); } catch { /* ignore */ }
  renderRecent();
}

function remember(id, title) {
  const list = loadRecent();
  const old = list.find((x) => x.id === id);
  const rest = list.filter((x) => x.id !== id);
  saveRecent([{ id, title: old?.title || clip(title, 80) || id, at: Date.now() }, ...rest]);
}

function forget(id) { saveRecent(loadRecent().filter((x) => x.id !== id)); }

function renderRecent() {
  const items = loadRecent().map((item) => el('li', {},
    el('a', { href: hashFor(item.id), 'aria-current': item.id === state.conversationId ? 'page' : null,
      title: item.title, text: item.title })));
  ui.recent.replaceChildren(...(items.length ? items : [el('li', { class: 'muted', text: 'None yet' })]));
}

// ---- server-sent events over POST -----------------------------------------------------------

function parseFrame(frame) {
  let type = 'message';
  const data = [];
  for (const line of frame.split(/\r?\n/)) {
    if (!line || line.startsWith(':')) continue;
    const colon = line.indexOf(':');
    const field = colon < 0 ? line : line.slice(0, colon);
    let value = colon < 0 ? '' : line.slice(colon + 1);
    if (value.startsWith(' ')) value = value.slice(1);
    if (field === 'event') type = value;
    else if (field === 'data') data.push(value);
  }
  if (!data.length) return null;
  try {
    return { type, data: JSON.parse(data.join('\n')) };
  } catch {
    return { type: 'error', data: { message: `the server sent an unreadable ${type} event` } };
  }
}

async function* readEvents(body) {
  const reader = body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = '';
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += value;
    for (let match = buffer.match(/\r?\n\r?\n/); match; match = buffer.match(/\r?\n\r?\n/)) {
      const event = parseFrame(buffer.slice(0, match.index));
      buffer = buffer.slice(match.index + match[0].length);
      if (event) yield event;
    }
  }
  const last = parseFrame(buffer);
  if (last) yield last;
}

// ---- turns ----------------------------------------------------------------------------------

function newTurn(question) {
  return { key: `t${++state.keys}`, id: null, question, plan: {}, status: {}, subAnswers: {},
    passages: {}, answer: null, streamed: '', pending: null, clarifications: [], error: null,
    done: false, paused: false, el: null };
}

function savedTurn(saved) {
  const turn = newTurn(saved.question || '');
  turn.id = saved.turn_id;
  turn.plan = saved.plan || {};
  for (const [nodeId, sub] of Object.entries(saved.answers || {})) {
    turn.status[nodeId] = 'done';
    turn.subAnswers[nodeId] = sub?.answer || '';
    turn.passages[nodeId] = sub?.passages || [];
  }
  const answer = saved.answer;
  turn.answer = answer && (answer.text || (answer.sentences || []).length) ? answer : null;
  turn.pending = saved.pending || null;
  turn.clarifications = saved.clarifications || [];
  turn.error = saved.error || null;
  turn.done = true;
  turn.paused = Boolean(turn.pending);
  return turn;
}

function mountTurn(turn) {
  ui.empty.hidden = true;
  const answer = el('div', { class: 'answer' });
  const clarifications = el('div', { class: 'clarifications' });
  const error = el('p', { class: 'error', hidden: true });
  const show = el('button', { type: 'button', class: 'link show-panel', text: 'Show plan and sources',
    onclick: () => focusTurn(turn) });
  const agent = el('div', { class: 'msg agent' }, el('span', { class: 'who', text: 'pursuit' }),
    answer, error, show);
  const article = el('article', { class: 'turn', 'data-turn': turn.key },
    el('div', { class: 'msg user' }, el('span', { class: 'who', text: 'You' }),
      el('p', { class: 'question', text: turn.question })),
    clarifications, agent);
  turn.el = { article, agent, answer, clarifications, error };
  ui.log.append(article);
  renderTurn(turn);
}

function renderTurn(turn) {
  if (!turn.el) return;
  renderClarifications(turn);
  renderAnswer(turn);
  const { error } = turn.el;
  if (turn.error) {
    const stopped = turn.error === 'stopped';
    error.textContent = stopped ? 'Stopped before the answer was finished.' : `Error: ${turn.error}`;
    error.className = stopped ? 'error stopped' : 'error';
    error.hidden = false;
  } else {
    error.hidden = true;
  }
  // While the agent waits for the user, its message would be empty: the question says it all.
  turn.el.agent.hidden = Boolean(turn.pending && !turn.answer && !turn.streamed && !turn.error);
}

function renderClarifications(turn) {
  const box = turn.el.clarifications;
  const items = turn.clarifications.map((c) => el('div', { class: 'msg clarified' },
    el('p', { class: 'asked', text: c.question }),
    el('p', { class: 'replied' }, el('span', { class: 'who', text: 'You' }), String(c.answer ?? ''))));
  if (turn.pending) {
    const busy = Boolean(state.running);
    const options = (turn.pending.options || []).map((option) => el('button', {
      type: 'button', class: 'option', text: option, disabled: busy,
      onclick: () => answerClarification(turn, String(option)) }));
    items.push(el('div', { class: 'msg clarify', role: 'group', 'aria-label': 'Clarifying question' },
      el('p', { class: 'asked', text: turn.pending.question }),
      el('div', { class: 'options' }, ...options),
      el('p', { class: 'hint muted', text: 'Pick an answer, or type your own below.' })));
  }
  box.replaceChildren(...items);
}

function renderAnswer(turn) {
  const box = turn.el.answer;
  if (turn.answer) {
    box.className = 'answer final';
    box.replaceChildren(...answerNodes(turn));
  } else if (turn.streamed) {
    box.className = turn.done ? 'answer partial' : 'answer streaming';
    box.replaceChildren(el('p', { class: 'answer-text', text: turn.streamed }));
  } else if (!turn.done) {
    box.className = 'answer pending';
    box.replaceChildren(el('p', { class: 'muted', text: 'Working…' }));
  } else if (!turn.pending && !turn.error) {
    box.className = 'answer';
    box.replaceChildren(el('p', { class: 'muted', text: 'No answer was saved for this question.' }));
  } else {
    box.replaceChildren();
  }
}

function answerNodes(turn) {
  const answer = turn.answer;
  const cited = new Map((answer.citations || []).map((c) => [Number(c.n), c]));
  const sentences = (answer.sentences || []).length ? answer.sentences
    : [{ text: answer.text || '', citations: [] }];
  const paragraph = el('p', { class: 'answer-text' });
  for (const sentence of sentences) {
    // a sentence saying the documents do not say something claims nothing: no mark
    const sourced = (sentence.citations || []).length > 0 || Boolean(sentence.abstains);
    const span = el('span', { class: sourced ? 'sentence' : 'sentence unsourced',
      title: sourced ? null : 'No cited passage supports this sentence' });
    appendCited(span, String(sentence.text ?? ''), cited, turn);
    if (!sourced) span.append(' ', el('span', { class: 'unsourced-mark', text: 'no source' }));
    paragraph.append(span, ' ');
  }
  const out = [paragraph];
  const gaps = answer.gaps || [];
  if (gaps.length) {
    const list = el('ul', { class: 'gaps' });
    for (const gap of gaps) list.append(el('li', { text: String(gap) }));
    out.push(el('p', { class: 'muted small', text: 'Not found in the documents:' }), list);
  }
  const unsupported = Number(answer.unsupported || 0);
  if (unsupported > 0) {
    out.push(el('p', { class: 'muted small',
      text: `${unsupported} sentence${unsupported === 1 ? '' : 's'} without a source (shown muted).` }));
  }
  return out;
}

function appendCited(parent, text, cited, turn) {
  const pattern = /\[(\d+(?:\s*,\s*\d+)*)\]/g;
  let last = 0;
  for (const match of text.matchAll(pattern)) {
    parent.append(text.slice(last, match.index));
    const numbers = match[1].split(',').map((n) => Number(n.trim()));
    if (numbers.every((n) => cited.has(n))) {
      for (const n of numbers) {
        const source = cited.get(n);
        parent.append(el('button', { type: 'button', class: 'cite', 'data-n': n, text: `[${n}]`,
          'aria-label': `Source ${n}: ${source.title || source.doc_id}`,
          onclick: () => highlightSource(turn, n) }));
      }
    } else {
      parent.append(match[0]);
    }
    last = match.index + match[0].length;
  }
  parent.append(text.slice(last));
}

// ---- the side panel: plan graph and sources of the focused turn ---------------------------

function focusTurn(turn) {
  state.focus = turn;
  for (const t of state.turns) t.el?.article.classList.toggle('focused', t === turn);
  renderPanel();
}

function renderPanel() {
  renderPlan(state.focus);
  renderSources(state.focus);
}

function nodeStatus(turn, nodeId) {
  return turn.status[nodeId] || (nodeId in turn.subAnswers ? 'done' : 'planned');
}

function depths(plan) {
  const depth = {};
  const visiting = new Set();
  const of = (id) => {
    if (id in depth) return depth[id];
    if (visiting.has(id)) return 0; // a cycle would be a server bug; draw it flat
    visiting.add(id);
    const parents = (plan[id].depends_on || []).filter((p) => p in plan);
    depth[id] = parents.length ? 1 + Math.max(...parents.map(of)) : 0;
    return depth[id];
  };
  Object.keys(plan).forEach(of);
  return depth;
}

function renderPlan(turn) {
  const plan = turn?.plan || {};
  const ids = Object.keys(plan);
  if (!ids.length) {
    ui.plan.replaceChildren(el('p', { class: 'muted', text: turn
      ? 'No plan yet.' : 'The sub-questions appear here as the plan grows.' }));
    ui.planList.replaceChildren();
    return;
  }
  const depth = depths(plan);
  const columns = [];
  for (const id of ids) (columns[depth[id]] ||= []).push(id);
  const W = 150, H = 46, GX = 30, GY = 12, PAD = 6;
  const at = {};
  columns.forEach((column, d) => column.forEach((id, row) => {
    at[id] = { x: PAD + d * (W + GX), y: PAD + row * (H + GY) };
  }));
  const rows = Math.max(...columns.map((c) => c.length));
  const width = PAD * 2 + columns.length * W + (columns.length - 1) * GX;
  const height = PAD * 2 + rows * H + (rows - 1) * GY;
  const done = ids.filter((id) => nodeStatus(turn, id) === 'done').length;
  const root = svg('svg', { viewBox: `0 0 ${width} ${height}`, width, height, role: 'img',
    class: 'plan-graph', 'aria-label': `Plan: ${ids.length} sub-questions, ${done} done` });
  root.style.maxWidth = `${width}px`;
  const defs = svg('defs');
  const marker = svg('marker', { id: 'arrow', viewBox: '0 0 8 8', refX: 8, refY: 4,
    markerWidth: 6, markerHeight: 6, orient: 'auto' });
  marker.append(svg('path', { d: 'M0,0 L8,4 L0,8 z', class: 'arrow' }));
  defs.append(marker);
  root.append(defs);
  for (const id of ids) {
    for (const parent of plan[id].depends_on || []) {
      if (!(parent in at)) continue;
      const a = at[parent], b = at[id];
      const x1 = a.x + W, y1 = a.y + H / 2, x2 = b.x, y2 = b.y + H / 2;
      root.append(svg('path', { class: 'edge', 'data-from': parent, 'data-to': id,
        'marker-end': 'url(#arrow)',
        d: `M${x1},${y1} C${x1 + GX / 2},${y1} ${x2 - GX / 2},${y2} ${x2},${y2}` }));
    }
  }
  for (const id of ids) {
    const status = nodeStatus(turn, id);
    const question = String(plan[id].question ?? '');
    const g = svg('g', { class: `node status-${status}`, 'data-node-id': id, 'data-status': status,
      transform: `translate(${at[id].x},${at[id].y})` });
    const title = svg('title');
    title.textContent = `${id} (${STATUS_LABEL[status] || status}): ${question}`;
    const head = svg('text', { x: 8, y: 17, class: 'node-head' });
    head.textContent = `${id} · ${STATUS_LABEL[status] || status}`;
    const label = svg('text', { x: 8, y: 35, class: 'node-label' });
    label.textContent = clip(question, 22);
    g.append(title, svg('rect', { width: W, height: H, rx: 6, ry: 6 }), head, label);
    root.append(g);
  }
  ui.plan.replaceChildren(root);
  ui.planList.replaceChildren(...ids.map((id) => {
    const status = nodeStatus(turn, id);
    const sub = turn.subAnswers[id];
    return el('li', { class: `status-${status}`, 'data-node-id': id },
      el('span', { class: `badge ${status}`, text: STATUS_LABEL[status] || status }), ' ',
      el('span', { class: 'sub-question', text: String(plan[id].question ?? '') }),
      sub ? el('p', { class: 'sub-answer', text: sub }) : null);
  }));
}

function sourceCard(passage, id, label) {
  const date = shortDate(passage.published_at);
  return el('li', { class: 'source', id, tabindex: -1, 'data-n': passage.n,
    'data-doc-id': passage.doc_id },
    el('div', { class: 'source-head' },
      el('span', { class: 'source-n', text: label }), ' ',
      el('span', { class: 'source-title', text: passage.title || passage.doc_id || '' })),
    el('div', { class: 'source-meta' },
      el('code', { class: 'doc-id', text: passage.doc_id ?? '' }),
      date ? el('time', { datetime: date, text: date }) : null),
    el('p', { class: 'passage', text: passage.text ?? '' }));
}

function renderSources(turn) {
  if (!turn) {
    ui.sources.replaceChildren(el('p', { class: 'muted',
      text: 'Passages the agent reads and cites appear here.' }));
    return;
  }
  const parts = [];
  const cited = turn.answer?.citations || [];
  if (cited.length) {
    parts.push(el('h3', { text: 'Cited' }),
      el('ol', { class: 'source-list cited' },
        ...cited.map((c) => sourceCard(c, `src-${turn.key}-${c.n}`, `[${c.n}]`))));
  }
  const groups = Object.keys(turn.passages).filter((id) => (turn.passages[id] || []).length);
  if (groups.length) {
    const count = groups.reduce((sum, id) => sum + turn.passages[id].length, 0);
    const items = groups.map((id) => el('li', { class: 'read-group' },
      el('p', { class: 'read-for', text: `${id}: ${turn.plan[id]?.question ?? ''}` }),
      el('ol', { class: 'source-list read' },
        ...turn.passages[id].map((p) => sourceCard(p, null, `${id} [${p.n}]`)))));
    const list = el('ul', { class: 'read-groups' }, ...items);
    parts.push(cited.length
      ? el('details', { class: 'read-all' }, el('summary', { text: `All passages read (${count})` }), list)
      : el('div', {}, el('h3', { text: `Passages read (${count})` }), list));
  }
  if (!parts.length) parts.push(el('p', { class: 'muted', text: 'No passages yet.' }));
  ui.sources.replaceChildren(...parts);
}

function highlightSource(turn, n) {
  if (state.focus !== turn) focusTurn(turn);
  for (const old of ui.sources.querySelectorAll('.highlight')) old.classList.remove('highlight');
  const card = document.getElementById(`src-${turn.key}-${n}`);
  if (!card) return;
  card.classList.add('highlight');
  card.scrollIntoView({ block: 'nearest', behavior: 'smooth' });
  card.focus({ preventScroll: true });
}

// ---- runs -----------------------------------------------------------------------------------

function handle(turn, type, data) {
  switch (type) {
    case 'conversation':
      turn.id = data.turn_id;
      if (data.conversation_id && data.conversation_id !== state.conversationId) {
        state.conversationId = data.conversation_id;
        setHash(state.conversationId);
      }
      remember(state.conversationId, state.turns[0]?.question || turn.question);
      return;
    case 'status':
      announce(PHASES[data.phase] || `${data.phase}…`);
      return;
    case 'plan':
      turn.plan = data.plan || {};
      break;
    case 'node':
      turn.status[data.node_id] = data.status;
      if (typeof data.answer === 'string') turn.subAnswers[data.node_id] = data.answer;
      if (data.status === 'searching') {
        announce(`Searching: ${clip(turn.plan[data.node_id]?.question || data.node_id, 80)}`);
      }
      break;
    case 'sources':
      turn.passages[data.node_id] = data.passages || [];
      break;
    case 'token':
      turn.streamed += String(data.text ?? '');
      renderAnswer(turn);
      return;
    case 'clarify':
      turn.pending = { question: data.question, options: data.options || [] };
      announce('The agent asks you a question before searching.');
      renderTurn(turn);
      updateComposer();
      return;
    case 'answer':
      turn.answer = data.answer || null;
      if (data.plan) turn.plan = data.plan;
      if (data.clarifications) turn.clarifications = data.clarifications;
      turn.pending = null;
      renderTurn(turn);
      break;
    case 'error':
      turn.error = String(data.message ?? 'unknown error');
      renderTurn(turn);
      return;
    case 'done':
      turn.paused = Boolean(data.paused);
      return;
    default:
      return; // heartbeat and anything newer
  }
  if (state.focus === turn) renderPanel();
}

async function runStream(url, body, turn, onRefused) {
  const run = { turn, controller: new AbortController() };
  state.running = run;
  turn.done = false;
  turn.error = null;
  updateComposer();
  renderTurn(turn);
  announce('Working…');
  let finished = false;
  try {
    const response = await fetch(url, { method: 'POST', headers: headers(), body: JSON.stringify(body),
      signal: run.controller.signal });
    if (!response.ok) {
      turn.error = await errorText(response);
      onRefused?.(response.status);
      return;
    }
    for await (const { type, data } of readEvents(response.body)) {
      handle(turn, type, data);
      if (type === 'done') finished = true;
    }
    if (!finished && !turn.error) {
      turn.error = 'the connection closed before the run finished; reload to see what was saved';
    }
  } catch (err) {
    if (err.name === 'AbortError') turn.error ||= 'stopped';
    else turn.error = `could not reach the server (${err.message}); check that it runs and try again`;
  } finally {
    turn.done = true;
    for (const [nodeId, status] of Object.entries(turn.status)) {
      if (status === 'searching') delete turn.status[nodeId]; // never finished: planned again
    }
    if (state.running === run) state.running = null;
    renderTurn(turn);
    if (state.focus === turn) renderPanel();
    updateComposer();
    if (turn.error === 'stopped') announce('Stopped.');
    else if (turn.error) announce(`Error: ${turn.error}`);
    else if (turn.pending) announce('Waiting for your answer to the clarifying question.');
    else announce('Answer ready.');
  }
}

async function ask(text) {
  const turn = newTurn(text);
  state.turns.push(turn);
  mountTurn(turn);
  focusTurn(turn);
  turn.el.article.scrollIntoView({ block: 'start' });
  const asked = state.conversationId;
  await runStream('/api/chat', { message: text, conversation_id: asked,
    as_of: ui.asOf.value || null, clarify: ui.clarify.checked }, turn, (status) => {
    if (status !== 404 || !asked) return;
    forget(asked); // the server no longer has it: the next question starts a new conversation
    if (state.conversationId === asked) {
      state.conversationId = null;
      setHash(null);
    }
    turn.error = 'this conversation is no longer on the server; ask again to start a new one';
  });
}

async function answerClarification(turn, answer) {
  if (state.running || !turn.pending || !turn.id) return;
  const pending = turn.pending;
  turn.clarifications = [...turn.clarifications, { ...pending, answer }];
  turn.pending = null;
  focusTurn(turn);
  await runStream('/api/resume', { conversation_id: state.conversationId, turn_id: turn.id, answer },
    turn, () => { // refused (busy, auth): the question is still open
      turn.pending = pending;
      turn.clarifications = turn.clarifications.slice(0, -1);
    });
}

async function stop() {
  const run = state.running;
  if (!run) return;
  ui.stop.disabled = true;
  announce('Stopping…');
  setTimeout(() => { if (state.running === run) run.controller.abort(); }, 5000);
  if (!run.turn.id || !state.conversationId) { run.controller.abort(); return; }
  try {
    const response = await fetch('/api/stop', { method: 'POST', headers: headers(),
      body: JSON.stringify({ conversation_id: state.conversationId, turn_id: run.turn.id }) });
    if (!response.ok || !(await response.json()).stopped) run.controller.abort();
  } catch {
    run.controller.abort();
  }
}

function updateComposer() {
  const busy = Boolean(state.running);
  const last = state.turns.at(-1);
  const answering = Boolean(last?.pending && last.id);
  ui.send.disabled = busy;
  ui.stop.disabled = !busy;
  ui.newChat.disabled = busy;
  ui.label.textContent = answering ? 'Your answer to the clarifying question' : 'Your question';
  ui.send.textContent = answering ? 'Answer' : 'Send';
  ui.question.placeholder = answering
    ? `${(last.pending.options || []).join(', ')}, or your own answer`
    : 'e.g. Where was the author of Dune born?';
  ui.log.setAttribute('aria-busy', busy ? 'true' : 'false');
  for (const turn of state.turns) if (turn.pending) renderClarifications(turn);
}

async function submit() {
  const text = ui.question.value.trim();
  if (!text || state.running) return;
  notice('');
  ui.question.value = '';
  const last = state.turns.at(-1);
  if (last?.pending && last.id) await answerClarification(last, text);
  else await ask(text);
  ui.question.focus();
}

// ---- conversations --------------------------------------------------------------------------

function clearView() {
  state.turns = [];
  state.focus = null;
  for (const node of ui.log.querySelectorAll('.turn')) node.remove();
  ui.empty.hidden = false;
  notice('');
  renderPanel();
}

function newConversation() {
  if (state.running) return;
  state.loads += 1;
  state.conversationId = null;
  setHash(null);
  clearView();
  renderRecent();
  updateComposer();
  announce('New conversation.');
  ui.question.focus();
}

async function loadThread(id) {
  const load = ++state.loads;
  if (state.running) state.running.controller.abort();
  clearView();
  state.conversationId = id;
  setHash(id);
  renderRecent();
  announce('Loading the conversation…');
  let response;
  for (let attempt = 0; ; attempt += 1) {
    try {
      response = await fetch(`/api/threads/${encodeURIComponent(id)}`, { headers: headers(false) });
    } catch (err) {
      notice(`Could not reach the server (${err.message}); check that it runs, then reload.`);
      return;
    }
    if (load !== state.loads) return;
    if (response.status !== 503 || attempt >= 30) break;
    announce('The server is still loading its models…'); // history needs the agent's threads
    await new Promise((resolve) => { setTimeout(resolve, 1000); });
    if (load !== state.loads) return;
  }
  if (!response.ok) {
    const why = await errorText(response);
    if (response.status === 404) {
      forget(id);
      state.conversationId = null;
      setHash(null);
      renderRecent();
    }
    notice(why);
    announce('');
    return;
  }
  const data = await response.json();
  if (load !== state.loads) return;
  for (const saved of data.turns || []) {
    const turn = savedTurn(saved);
    state.turns.push(turn);
    mountTurn(turn);
  }
  const last = state.turns.at(-1);
  if (last) {
    remember(id, state.turns[0].question);
    focusTurn(last);
  }
  updateComposer();
  announce(last?.pending ? 'Waiting for your answer to the clarifying question.'
    : `Loaded ${state.turns.length} question${state.turns.length === 1 ? '' : 's'}.`);
}

async function showHealth() {
  try {
    const response = await fetch('/api/health', { headers: headers(false) });
    if (!response.ok) {
      const why = await errorText(response);
      ui.health.textContent = '';
      if (response.status === 401) notice(why);
      return;
    }
    const info = await response.json();
    const loading = info.ready === false ? ' · loading models…' : '';
    ui.health.textContent = `${info.documents} documents in ${info.index} · ${info.model}${loading}`;
    if (loading) setTimeout(showHealth, 2000);
  } catch { ui.health.textContent = 'server unreachable'; }
}

function onHashChange() {
  const id = hashParams().get('c');
  if (id && id !== state.conversationId) loadThread(id);
  else if (!id && state.conversationId && !state.running) newConversation();
}

function start() {
  ui.form.addEventListener('submit', (event) => { event.preventDefault(); submit(); });
  ui.question.addEventListener('keydown', (event) => {
    if (event.key === 'Enter' && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      ui.form.requestSubmit();
    }
  });
  ui.stop.addEventListener('click', stop);
  ui.newChat.addEventListener('click', newConversation);
  window.addEventListener('hashchange', onHashChange);
  renderRecent();
  renderPanel();
  updateComposer();
  showHealth();
  let saved = null;
  try { saved = localStorage.getItem(CURRENT_KEY); } catch { /* storage disabled */ }
  const id = hashParams().get('c') || saved;
  if (id) loadThread(id);
  ui.question.focus();
}

start();
