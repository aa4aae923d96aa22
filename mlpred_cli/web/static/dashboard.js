/* mlpred live dashboard: draws the pages of `mlpred serve` from its JSON API.
 *
 * Plain ES2020, no build step. Charts use the vendored uPlot (global `uPlot`).
 * Every string that comes from the API is put into the DOM with textContent /
 * createElement only (symbols and versions come from the database).
 */
'use strict';

(() => {
  // ---------------------------------------------------------------- constants

  const DASH = '–';
  const HORIZON_STYLES = {
    '15m': { color: '#0072b2', dash: [] },
    '1h': { color: '#d55e00', dash: [8, 4] },
    '4h': { color: '#009e73', dash: [4, 2] },
    '12h': { color: '#a0457e', dash: [10, 3, 2, 3] },
  };
  const FALLBACK_COLORS = ['#56b4e9', '#e69f00', '#444444', '#cc79a7'];
  const SEVERITY_MARK = { OK: '✓', WARNING: '⚠', CRITICAL: '✖' };
  const VERDICT_TEXT = {
    above: '▲ above base',
    below: '▼ below base',
    within: '● within base',
    unknown: '? no verdict',
  };

  // ------------------------------------------------------------------- state

  const content = document.getElementById('content');
  const form = document.getElementById('filters');
  const state = {
    page: content ? content.dataset.page || '' : '',
    refreshS: content ? Math.max(1, Number(content.dataset.refresh) || 30) : 30,
    symbol: content ? content.dataset.symbol || '' : '',
    horizons: [],
    renderedVersion: null,
    eventVersion: null,
    loading: false,
    forceReload: false,
    lastPolledAt: null,
    newestPrediction: null,
    predictionLimits: null,
    choicesLoadedAt: 0,
    authExpired: false,
    errorSource: null,
    serverError: null,
    statusBusy: false,
    lastEventAt: 0,
    es: null,
    reconnectTimer: null,
    symbolsData: null,
    symbolsSort: { key: 'predictions', dir: -1 },
    feedSeen: null,
    feedOutcomes: new Map(),
    feedLimit: 50,
  };
  const charts = new Map(); // container element -> uPlot instance

  // ----------------------------------------------------------------- helpers

  /** Build an element. props: class, text, dataset, on<event>, other attributes. */
  function h(tag, props, ...children) {
    const node = document.createElement(tag);
    if (props) {
      for (const [key, value] of Object.entries(props)) {
        if (value === null || value === undefined || value === false) continue;
        if (key === 'class') node.className = value;
        else if (key === 'text') node.textContent = String(value);
        else if (key === 'title') node.title = String(value);
        else if (key === 'dataset') Object.assign(node.dataset, value);
        else if (key.startsWith('on') && typeof value === 'function') {
          node.addEventListener(key.slice(2), value);
        } else node.setAttribute(key, value === true ? '' : String(value));
      }
    }
    for (const child of children.flat(Infinity)) {
      if (child === null || child === undefined || child === false) continue;
      node.append(child instanceof Node ? child : String(child));
    }
    return node;
  }

  const $ = (id) => document.getElementById(id);
  const isNum = (v) => typeof v === 'number' && Number.isFinite(v);

  function fmtPct(v, digits = 1) {
    return isNum(v) ? `${(v * 100).toFixed(digits)}%` : DASH;
  }
  function fmtSigned(v, digits) {
    if (!isNum(v)) return DASH;
    const s = Math.abs(v).toFixed(digits);
    if (Number(s) === 0) return s;
    return (v > 0 ? '+' : '-') + s;
  }
  const fmtIC = (v) => fmtSigned(v, 3);
  const fmtNum = (v, digits) => (isNum(v) ? v.toFixed(digits) : DASH);
  const fmtInt = (v) => (isNum(v) ? Math.round(v).toLocaleString('en-US') : DASH);
  const fmtPp = (v) => (isNum(v) ? `${fmtSigned(v * 100, 1)} pp` : DASH);
  const fmtRet = (v) => (isNum(v) ? `${fmtSigned(v * 100, 2)}%` : DASH);

  function fmtAge(seconds) {
    if (!isNum(seconds)) return DASH;
    const s = Math.max(0, seconds);
    if (s < 60) return `${Math.floor(s)} s`;
    if (s < 3600) return `${Math.floor(s / 60)} min`;
    if (s < 48 * 3600) return `${Math.floor(s / 3600)} h`;
    return `${Math.floor(s / 86400)} d`;
  }

  function parseTime(iso) {
    if (typeof iso !== 'string' || !iso) return null;
    const t = Date.parse(iso);
    return Number.isNaN(t) ? null : t;
  }

  const pad2 = (n) => String(n).padStart(2, '0');
  function fmtDay(ms) {
    const d = new Date(ms);
    return `${d.getUTCFullYear()}-${pad2(d.getUTCMonth() + 1)}-${pad2(d.getUTCDate())}`;
  }
  function fmtClock(ms, seconds = false) {
    const d = new Date(ms);
    const hm = `${pad2(d.getUTCHours())}:${pad2(d.getUTCMinutes())}`;
    return seconds ? `${hm}:${pad2(d.getUTCSeconds())}` : hm;
  }
  /** "2026-12-01 10:15 UTC"; today's times as "10:15:03". */
  function fmtTime(iso, withSeconds = false) {
    const ms = parseTime(iso);
    if (ms === null) return DASH;
    if (fmtDay(ms) === fmtDay(Date.now())) return fmtClock(ms, true);
    return `${fmtDay(ms)} ${fmtClock(ms, withSeconds)}`;
  }
  /** A configured duration or lag: like fmtAge, but "75 min" rather than "1 h". */
  function fmtDuration(seconds) {
    if (!isNum(seconds)) return DASH;
    if (seconds >= 3600 && seconds < 48 * 3600 && Math.round(seconds / 60) % 60 !== 0) {
      const minutes = Math.round(seconds / 60);
      return `${Math.floor(minutes / 60)} h ${minutes % 60} min`;
    }
    return fmtAge(seconds);
  }

  function horizonStyle(hz, i = 0) {
    return HORIZON_STYLES[hz] || { color: FALLBACK_COLORS[i % FALLBACK_COLORS.length], dash: [] };
  }
  function alpha(hex, a) {
    const m = /^#([0-9a-f]{2})([0-9a-f]{2})([0-9a-f]{2})$/i.exec(hex);
    if (!m) return hex;
    return `rgba(${parseInt(m[1], 16)}, ${parseInt(m[2], 16)}, ${parseInt(m[3], 16)}, ${a})`;
  }

  function severityClass(sev) {
    const s = String(sev || '').toUpperCase();
    if (s === 'CRITICAL' || s === 'ERROR') return 'sev-critical';
    if (s === 'WARNING') return 'sev-warning';
    if (s === 'OK') return 'sev-ok';
    return 'sev-unknown';
  }
  function severityBadge(sev) {
    const s = String(sev || 'UNKNOWN').toUpperCase();
    return h('span', { class: `badge ${severityClass(s)}` }, `${SEVERITY_MARK[s] || '?'} ${s}`);
  }

  // ------------------------------------------------------------ error line

  function showError(message) {
    const box = $('error');
    if (!box) return;
    box.textContent = String(message).split('\n')[0];
    box.hidden = false;
  }
  function clearError() {
    const box = $('error');
    if (!box || state.authExpired) return;
    if (state.serverError) {
      showError(`server cannot read the data: ${state.serverError}`);
      return;
    }
    box.textContent = '';
    box.hidden = true;
  }
  function describeError(err) {
    if (err && typeof err.message === 'string' && err.message) return err.message;
    return String(err);
  }

  // --------------------------------------------------------------------- api

  class ApiError extends Error {
    constructor(status, message) {
      super(message);
      this.status = status;
    }
  }

  async function getJSON(path, query) {
    const url = query ? `${path}?${query}` : path;
    let resp;
    try {
      resp = await fetch(url, {
        headers: { Accept: 'application/json' },
        credentials: 'same-origin',
        cache: 'no-store',
      });
    } catch (err) {
      throw new ApiError(0, `${path}: server unreachable (${describeError(err)})`);
    }
    if (resp.status === 401) {
      throw new ApiError(401, 'session expired: open /login?token=... to sign in again');
    }
    let body = null;
    try {
      body = await resp.json();
    } catch (err) {
      body = null;
    }
    if (!resp.ok) {
      const detail = body && typeof body.error === 'string' ? body.error : resp.statusText;
      throw new ApiError(resp.status, `${path}: HTTP ${resp.status}: ${detail}`);
    }
    if (body === null || typeof body !== 'object') {
      throw new ApiError(resp.status, `${path}: the response is not a JSON object`);
    }
    return body;
  }

  /** Shows a failed call's one line; `source` "status" marks it as cleared by the next
   * good status poll (the server coming back), page errors by the next good page load. */
  function handleFailure(err, source) {
    state.errorSource = source || 'page';
    if (err instanceof ApiError && err.status === 401) {
      state.authExpired = true;
      stopEvents();
      setConnection('closed', '✖ signed out');
    }
    showError(describeError(err));
  }

  // ----------------------------------------------------------------- filters

  const FILTER_NAMES = ['symbol', 'model_version', 'horizon', 'days'];
  const DEFAULT_DAYS = 7;

  function readFilters() {
    const out = {};
    for (const name of FILTER_NAMES) {
      const field = form ? form.elements.namedItem(name) : null;
      out[name] = field && 'value' in field ? String(field.value) : '';
    }
    return out;
  }

  /** Query string of the filters; on the symbol page the symbol is in the path. */
  function filterQuery(filters, includeSymbol) {
    const params = new URLSearchParams();
    for (const name of FILTER_NAMES) {
      if (name === 'symbol' && !includeSymbol) continue;
      const value = filters[name];
      if (name === 'days' && String(value) === String(DEFAULT_DAYS)) continue; // as the server's `query`
      if (value !== '' && value !== undefined && value !== null) params.set(name, value);
    }
    return params.toString();
  }

  function pageQuery() {
    return filterQuery(readFilters(), state.page !== 'symbol');
  }

  /** The query the API calls carry (the symbol page adds its symbol). */
  function apiQuery(extra) {
    const filters = readFilters();
    if (state.page === 'symbol') filters.symbol = state.symbol;
    const q = new URLSearchParams(filterQuery(filters, true));
    if (extra) for (const [k, v] of Object.entries(extra)) q.set(k, String(v));
    return q.toString();
  }

  function withQuery(path, query) {
    return query ? `${path}?${query}` : path;
  }

  function updateNavLinks() {
    const q = pageQuery();
    for (const a of document.querySelectorAll('a[data-nav-base]')) {
      a.setAttribute('href', withQuery(a.dataset.navBase, q));
    }
  }

  function symbolHref(symbol) {
    const filters = readFilters();
    return withQuery(`/symbols/${encodeURIComponent(symbol)}`, filterQuery(filters, false));
  }

  function onFiltersChanged() {
    const filters = readFilters();
    if (state.page === 'symbol' && filters.symbol !== state.symbol) {
      const rest = filterQuery(filters, false);
      const target = filters.symbol ? `/symbols/${encodeURIComponent(filters.symbol)}` : '/symbols';
      window.location.assign(withQuery(target, rest));
      return;
    }
    const q = pageQuery();
    try {
      window.history.replaceState(null, '', withQuery(window.location.pathname, q));
    } catch (err) {
      showError(`could not update the address bar: ${describeError(err)}`);
    }
    updateNavLinks();
    state.choicesLoadedAt = 0;
    state.feedSeen = null;
    state.feedOutcomes = new Map();
    requestRefresh(true);
  }

  function fillSelect(name, values) {
    const select = form ? form.elements.namedItem(name) : null;
    if (!select || !Array.isArray(values)) return;
    const current = select.value;
    const wanted = values.filter((v) => typeof v === 'string' && v !== '');
    if (current && !wanted.includes(current)) wanted.unshift(current);
    const existing = Array.from(select.options)
      .slice(1)
      .map((o) => o.value);
    if (existing.length === wanted.length && existing.every((v, i) => v === wanted[i])) return;
    while (select.options.length > 1) select.remove(1);
    for (const v of wanted) select.add(h('option', { value: v, text: v }));
    select.value = current;
  }

  function applyChoices(data) {
    const choices = data && data.choices;
    if (!choices) return;
    fillSelect('symbol', choices.symbols);
    fillSelect('model_version', choices.model_versions);
  }

  function applyFreshnessLimits(data) {
    const fr = data && data.freshness;
    if (!fr) return;
    if (fr.prediction) state.predictionLimits = fr.prediction;
    if (fr.newest_prediction !== undefined && state.newestPrediction === null) {
      state.newestPrediction = fr.newest_prediction;
    }
  }

  function applyWindow(data) {
    const box = $('window');
    const w = data && data.window;
    if (!box || !w) return;
    const since = parseTime(w.since);
    const until = parseTime(w.until);
    if (since === null || until === null) {
      box.textContent = '';
      return;
    }
    box.textContent = `window ${fmtDay(since)} → ${fmtDay(until)} ${fmtClock(until)} UTC`;
  }

  /** Overview data for the filter choices and freshness limits (every page but the overview). */
  async function loadChoices() {
    if (Date.now() - state.choicesLoadedAt < 60000) return;
    const data = await getJSON('/api/overview', apiQuery());
    state.choicesLoadedAt = Date.now();
    applyChoices(data);
    applyFreshnessLimits(data);
  }

  // ------------------------------------------------------------------ charts

  const resizeObserver =
    typeof ResizeObserver === 'function'
      ? new ResizeObserver((entries) => {
          window.requestAnimationFrame(() => {
            for (const entry of entries) resizeChart(entry.target);
          });
        })
      : null;

  function chartWidth(container) {
    const w = Math.floor(container.clientWidth || 0);
    return w > 50 ? w : Math.max(320, Math.floor((window.innerWidth || 800) - 80));
  }

  function resizeChart(container) {
    const plot = charts.get(container);
    if (!plot) return;
    const width = chartWidth(container);
    if (Math.abs(width - plot.width) >= 1) {
      plot.setSize({ width, height: plot.height });
    }
  }

  function destroyChart(container) {
    const plot = charts.get(container);
    if (plot) {
      plot.destroy();
      charts.delete(container);
    }
    if (resizeObserver) resizeObserver.unobserve(container);
  }

  function showEmpty(container, message) {
    if (!container) return;
    destroyChart(container);
    container.replaceChildren(h('p', { class: 'empty' }, message || 'no data in this window'));
  }

  function mountChart(container, opts, data) {
    destroyChart(container);
    container.replaceChildren();
    if (typeof window.uPlot !== 'function') {
      container.append(h('p', { class: 'empty' }, 'chart library not loaded'));
      return null;
    }
    const plot = new window.uPlot(
      Object.assign(
        {
          width: chartWidth(container),
          height: 240,
          tzDate: (ts) => window.uPlot.tzDate(new Date(ts * 1000), 'UTC'),
        },
        opts,
      ),
      data,
      container,
    );
    charts.set(container, plot);
    if (resizeObserver) resizeObserver.observe(container);
    return plot;
  }

  function pctAxis() {
    return {
      stroke: '#444',
      grid: { stroke: '#eceef1' },
      ticks: { stroke: '#d0d4da' },
      size: 54,
      values: (u, splits) =>
        splits.map((v) =>
          isNum(v)
            ? `${(v * 100).toFixed(splits.length && Math.abs(splits[1] - splits[0]) < 0.01 ? 1 : 0)}%`
            : '',
        ),
    };
  }
  const COUNT_INCRS = [
    1, 2, 5, 10, 20, 25, 50, 100, 200, 250, 500, 1000, 2000, 2500, 5000, 1e4, 2e4, 5e4, 1e5, 2e5, 5e5, 1e6,
  ];

  function numAxis(digits, size) {
    const axis = {
      stroke: '#444',
      grid: { stroke: '#eceef1' },
      ticks: { stroke: '#d0d4da' },
      size: size || 54,
      values: (u, splits) =>
        splits.map((v) => {
          if (!isNum(v)) return '';
          if (digits === 0) return Math.abs(v - Math.round(v)) > 1e-9 ? '' : fmtInt(v);
          return v.toFixed(digits);
        }),
    };
    if (digits === 0) axis.incrs = COUNT_INCRS; // whole numbers only
    return axis;
  }

  const DAY = 86400;
  const DAY_INCRS = [1, 2, 3, 7, 14, 28, 56, 91, 182, 364, 728].map((n) => n * DAY);

  /** Time axis labels in UTC: "11-29" for day steps (with the year on long spans),
   * "18:00" within a day (the date at midnight). Daily charts tick on whole days only. */
  function timeAxis(daily) {
    const axis = {
      space: daily ? 56 : 50,
      stroke: '#444',
      grid: { stroke: '#eceef1' },
      ticks: { stroke: '#d0d4da' },
      values: (u, splits, axisIdx, space, incr) => {
        let lastYear = null;
        return splits.map((v) => {
          if (!isNum(v)) return '';
          const ms = v * 1000;
          const full = fmtDay(ms);
          const year = full.slice(0, 4);
          const withYear = incr >= 28 * DAY && year !== lastYear;
          lastYear = year;
          const day = withYear ? full : full.slice(5);
          if (incr >= DAY) return day;
          const clock = fmtClock(ms);
          return clock === '00:00' ? day : clock;
        });
      },
    };
    if (daily) axis.incrs = DAY_INCRS;
    return axis;
  }

  /** Draws a horizontal reference line (e.g. IC = 0) under the series. */
  function refLinePlugin(value, color) {
    return {
      hooks: {
        drawAxes: [
          (u) => {
            const y = u.valToPos(value, 'y', true);
            if (!isNum(y) || y < u.bbox.top || y > u.bbox.top + u.bbox.height) return;
            const ctx = u.ctx;
            ctx.save();
            ctx.strokeStyle = color;
            ctx.lineWidth = Math.max(1, window.devicePixelRatio || 1);
            ctx.beginPath();
            ctx.moveTo(u.bbox.left, Math.round(y) + 0.5);
            ctx.lineTo(u.bbox.left + u.bbox.width, Math.round(y) + 0.5);
            ctx.stroke();
            ctx.restore();
          },
        ],
      },
    };
  }

  function paddedRange(lo, hi, clampLo, clampHi, minSpan) {
    return (u, min, max) => {
      if (!isNum(min) || !isNum(max)) return [lo, hi];
      let a = min;
      let b = max;
      const span = Math.max(b - a, minSpan);
      const mid = (a + b) / 2;
      a = Math.min(a, mid - span / 2) - span * 0.08;
      b = Math.max(b, mid + span / 2) + span * 0.08;
      if (isNum(clampLo)) a = Math.max(clampLo, a);
      if (isNum(clampHi)) b = Math.min(clampHi, b);
      return [a, b];
    };
  }

  function dayValue(u, v) {
    return isNum(v) ? fmtDay(v * 1000) : DASH;
  }

  /**
   * One chart of a daily metric, one line per horizon (with its interval as a
   * band when `band`, plus the base rate as a flat line when `base`).
   */
  function drawMetricChart(container, seriesList, metric, options) {
    if (!container) return;
    const opts = Object.assign({ band: false, base: false, fmt: fmtPct, axis: pctAxis() }, options);
    const list = (Array.isArray(seriesList) ? seriesList : []).filter((s) => s && Array.isArray(s.t));
    const stamps = new Set();
    for (const s of list) for (const t of s.t) if (isNum(t)) stamps.add(t);
    const xs = Array.from(stamps).sort((a, b) => a - b);
    const index = new Map(xs.map((t, i) => [t, i]));
    const counts = metric === 'n'; // all-zero counts are no data too
    const hasData = list.some(
      (s) => Array.isArray(s[metric]) && s[metric].some((v) => isNum(v) && (!counts || v > 0)),
    );
    if (!xs.length || !hasData) {
      showEmpty(container);
      return;
    }
    const data = [xs];
    const series = [{ label: 'day (UTC)', value: dayValue }];
    const bands = [];
    const column = (s, key) => {
      const out = new Array(xs.length).fill(null);
      const values = Array.isArray(s[key]) ? s[key] : [];
      s.t.forEach((t, i) => {
        const j = index.get(t);
        if (j !== undefined && isNum(values[i])) out[j] = values[i];
      });
      return out;
    };
    list.forEach((s, i) => {
      const style = horizonStyle(s.horizon, i);
      const label = String(s.horizon);
      if (opts.band && Array.isArray(s[`${metric}_low`]) && Array.isArray(s[`${metric}_high`])) {
        // the interval's edges: thin lines, filled between by a uPlot band
        const edge = (side) => {
          data.push(column(s, `${metric}_${side}`));
          series.push({
            label: `${label} ${side}`,
            class: 'band-edge',
            stroke: alpha(style.color, 0.35),
            width: 1,
            points: { show: false },
            value: (u, v) => opts.fmt(v),
          });
          return data.length - 1;
        };
        const hiIdx = edge('high');
        const loIdx = edge('low');
        bands.push({ series: [hiIdx, loIdx], fill: alpha(style.color, 0.13) });
      }
      data.push(column(s, metric));
      series.push({
        label,
        stroke: style.color,
        dash: style.dash,
        width: 2,
        // few points: big dots; many (over 120 days): uPlot's own density rule
        points:
          xs.length <= 3
            ? { show: true, size: 10, fill: style.color }
            : xs.length <= 120
              ? { show: true, size: 5, fill: '#fff' }
              : { size: 4, fill: '#fff' },
        value: (u, v) => opts.fmt(v),
      });
      if (opts.base && isNum(s.base_rate)) {
        data.push(xs.map(() => s.base_rate));
        series.push({
          label: `${label} base`,
          class: 'base-line',
          stroke: style.color,
          dash: [1, 4],
          width: 1.5,
          points: { show: false },
          value: (u, v) => opts.fmt(v),
        });
      }
    });
    // the whole window (missing days show as gaps), half a day of margin each side
    let x0 = xs[0];
    let x1 = xs[xs.length - 1];
    const since = parseTime(opts.window && opts.window.since);
    const until = parseTime(opts.window && opts.window.until);
    if (since !== null) x0 = Math.min(x0, Math.floor(since / 1000 / DAY) * DAY);
    if (until !== null) x1 = Math.max(x1, Math.floor(until / 1000 / DAY) * DAY);
    const xRange = [x0 - DAY / 2, x1 + DAY / 2];
    const plugins = [];
    if (isNum(opts.refLine)) plugins.push(refLinePlugin(opts.refLine, '#9aa1ab'));
    mountChart(
      container,
      {
        height: opts.height || 240,
        series,
        bands,
        plugins,
        cursor: { drag: { x: true, y: false }, sync: { key: 'daily' } },
        scales: {
          x: { time: true, range: () => xRange },
          y: { range: opts.range || paddedRange(0, 1, 0, 1, 0.05) },
        },
        axes: [timeAxis(true), opts.axis],
      },
      data,
    );
  }

  function drawPerHour(container, perHour) {
    if (!container) return;
    const t = perHour && Array.isArray(perHour.t) ? perHour.t : [];
    const count = perHour && Array.isArray(perHour.count) ? perHour.count : [];
    const total = count.reduce((a, b) => a + (isNum(b) ? b : 0), 0);
    if (!t.length || total === 0) {
      showEmpty(container, 'no data in this window (no predictions in the last 48 h)');
      return;
    }
    const data = [t.slice(), t.map((_, i) => (isNum(count[i]) ? count[i] : null))];
    const barSeries = {
      label: 'predictions',
      stroke: '#0072b2',
      fill: alpha('#0072b2', 0.55),
      width: 1,
      points: { show: false },
      value: (u, v) => fmtInt(v),
    };
    if (window.uPlot && window.uPlot.paths && window.uPlot.paths.bars) {
      barSeries.paths = window.uPlot.paths.bars({ size: [0.85, 40], gap: 1 });
    }
    mountChart(
      container,
      {
        height: 150,
        series: [
          {
            label: 'hour (UTC)',
            value: (u, v) => (isNum(v) ? `${fmtDay(v * 1000)} ${fmtClock(v * 1000)}` : DASH),
          },
          barSeries,
        ],
        cursor: { drag: { x: false, y: false } },
        scales: {
          x: { time: true, range: () => [t[0] - 1800, t[t.length - 1] + 1800] },
          y: { range: (u, min, max) => [0, Math.max(1, isNum(max) ? max : 1) * 1.1] },
        },
        axes: [timeAxis(false), numAxis(0, 44)],
      },
      data,
    );
  }

  // ------------------------------------------------------- overview pieces

  function renderSummary(data, extra) {
    const box = $('summary');
    if (!box) return;
    const parts = [];
    const sep = () => (parts.length ? ' · ' : '');
    if (isNum(data.predictions))
      parts.push(h('strong', null, fmtInt(data.predictions)), ' predictions in the window');
    const src = data.sources;
    if (src) {
      const bits = [];
      if (isNum(src.raw_days)) bits.push(`${src.raw_days} d raw`);
      if (isNum(src.rollup_days)) bits.push(`${src.rollup_days} d from rollups`);
      if (isNum(src.archived_days) && src.archived_days > 0) bits.push(`${src.archived_days} d archived`);
      if (bits.length) parts.push(h('span', { class: 'muted' }, `${sep()}sources: ${bits.join(', ')}`));
    }
    if (extra) parts.push(h('span', { class: 'muted' }, `${sep()}${extra}`));
    if (data.generated_at)
      parts.push(h('span', { class: 'muted' }, `${sep()}generated ${fmtTime(data.generated_at)} UTC`));
    box.replaceChildren(...parts);
  }

  function intervalBar(acc, lo, hi, base) {
    const values = [acc, lo, hi, base].filter(isNum);
    const track = h('div', {
      class: 'ibar',
      title: 'bar: 95% interval; dot: accuracy; black line: base rate',
    });
    if (!values.length) return track;
    const vmin = Math.min(...values);
    const vmax = Math.max(...values);
    const pad = Math.max(0.02, (vmax - vmin) * 0.3);
    const a = Math.max(0, vmin - pad);
    const b = Math.min(1, vmax + pad);
    const pos = (v) => `${(((v - a) / (b - a || 1)) * 100).toFixed(2)}%`;
    if (isNum(lo) && isNum(hi)) {
      const range = h('span', { class: 'ibar-range' });
      range.style.left = pos(lo);
      range.style.width = `${Math.max(0.5, ((hi - lo) / (b - a || 1)) * 100).toFixed(2)}%`;
      track.append(range);
    }
    if (isNum(base)) {
      const tick = h('span', { class: 'ibar-base', title: `base rate ${fmtPct(base)}` });
      tick.style.left = pos(base);
      track.append(tick);
    }
    if (isNum(acc)) {
      const dot = h('span', { class: 'ibar-value' });
      dot.style.left = pos(acc);
      track.append(dot);
    }
    return track;
  }

  function kv(label, value, note, valueClass) {
    return h(
      'div',
      { class: 'kv-row' },
      h('dt', null, label),
      h(
        'dd',
        null,
        h('span', { class: `kv-value ${valueClass || ''}`.trim() }, value),
        note ? h('span', { class: 'kv-note' }, note) : null,
      ),
    );
  }

  function gapNote(gap) {
    if (!isNum(gap)) return '';
    if (Math.abs(gap) < 0.005) return 'well calibrated';
    return gap > 0 ? '▲ over-confident' : '▼ under-confident';
  }

  function horizonCard(hz, index) {
    const verdict = VERDICT_TEXT[hz.verdict] ? hz.verdict : 'unknown';
    const style = horizonStyle(hz.horizon, index);
    const swatch = h('span', { class: 'swatch' });
    swatch.style.background = style.color;
    const ciText =
      isNum(hz.accuracy_low) && isNum(hz.accuracy_high)
        ? `95% CI ${fmtPct(hz.accuracy_low)} – ${fmtPct(hz.accuracy_high)}`
        : '95% CI –';
    const hitCi =
      isNum(hz.hit_rate_low) && isNum(hz.hit_rate_high)
        ? `${fmtPct(hz.hit_rate_low)} – ${fmtPct(hz.hit_rate_high)} · `
        : '';
    const icNote = [];
    if (isNum(hz.ic_t)) icNote.push(`t ${fmtNum(hz.ic_t, 2)}`);
    if (isNum(hz.ic_days)) icNote.push(`${hz.ic_days} daily ICs`);
    if (isNum(hz.pearson_ic)) icNote.push(`Pearson ${fmtIC(hz.pearson_ic)}`);
    const icClass = isNum(hz.ic) ? (hz.ic > 0 ? 'pos' : hz.ic < 0 ? 'neg' : '') : '';
    if (hz.predictions === 0) {
      return h(
        'article',
        { class: 'card verdict-unknown', dataset: { horizon: String(hz.horizon) } },
        h(
          'header',
          { class: 'card-head' },
          swatch,
          h('span', { class: 'card-title' }, String(hz.horizon)),
          h('span', { class: 'verdict verdict-unknown' }, VERDICT_TEXT.unknown),
        ),
        h('p', { class: 'empty' }, 'no data in this window'),
      );
    }
    return h(
      'article',
      { class: `card verdict-${verdict}`, dataset: { horizon: String(hz.horizon) } },
      h(
        'header',
        { class: 'card-head' },
        swatch,
        h('span', { class: 'card-title' }, String(hz.horizon)),
        h('span', { class: `verdict verdict-${verdict}` }, VERDICT_TEXT[verdict]),
      ),
      h(
        'div',
        { class: 'card-main' },
        h('span', { class: 'big' }, fmtPct(hz.accuracy)),
        h('span', { class: 'big-label' }, 'accuracy'),
      ),
      h('div', { class: 'card-ci' }, `${ciText} · base ${fmtPct(hz.base_rate)}`),
      intervalBar(hz.accuracy, hz.accuracy_low, hz.accuracy_high, hz.base_rate),
      h(
        'dl',
        { class: 'kv' },
        kv('Hit rate', fmtPct(hz.hit_rate), `${hitCi}n ${fmtInt(hz.n_directional)}`),
        kv('IC', fmtIC(hz.ic), icNote.join(' · '), icClass),
        kv('Brier', fmtNum(hz.brier, 4), isNum(hz.ece) ? `ECE ${fmtPct(hz.ece)}` : ''),
        kv('Calib. gap', fmtPp(hz.calibration_gap), gapNote(hz.calibration_gap)),
        kv('Matured', fmtPct(hz.matured_share), `${fmtInt(hz.due)} of ${fmtInt(hz.predictions)} due`),
        kv('Scored', fmtPct(hz.scored_share), `${fmtInt(hz.scored)} scored`),
      ),
    );
  }

  function renderCards(container, horizons) {
    if (!container) return;
    const list = Array.isArray(horizons) ? horizons : [];
    if (!list.length) {
      container.replaceChildren(h('p', { class: 'empty' }, 'no data in this window'));
      return;
    }
    container.replaceChildren(...list.map(horizonCard));
  }

  function ageSpan(iso, limits) {
    const span = h('span', { class: 'age', dataset: { ageFrom: iso || '' } }, DASH);
    if (limits && isNum(limits.warning_after_s)) span.dataset.warnAfter = String(limits.warning_after_s);
    if (limits && isNum(limits.critical_after_s)) span.dataset.critAfter = String(limits.critical_after_s);
    updateAge(span, Date.now());
    return span;
  }

  function renderFreshness(container, fr) {
    if (!container) return;
    if (!fr) {
      container.replaceChildren(h('p', { class: 'empty' }, 'no freshness data'));
      return;
    }
    const limits = fr.prediction || {};
    const newest = fr.newest_prediction;
    const head = h(
      'div',
      { class: 'fresh-head' },
      h('span', { class: 'fresh-label' }, 'Newest prediction'),
      newest ? ageSpan(newest, limits) : h('span', { class: 'age sev-critical' }, '✖ none'),
      newest ? h('span', { class: 'muted' }, ` ago · ${fmtTime(newest)} UTC`) : null,
    );
    const limitsLine = h(
      'div',
      { class: 'muted small' },
      `warning after ${fmtDuration(limits.warning_after_s)}, critical after ${fmtDuration(limits.critical_after_s)}`,
    );
    const outcomes = Array.isArray(fr.outcomes) ? fr.outcomes : [];
    let table;
    if (outcomes.length) {
      table = h(
        'table',
        { class: 'grid-table compact' },
        h(
          'thead',
          null,
          h(
            'tr',
            null,
            h('th', null, 'Outcomes'),
            h('th', null, 'newest filled'),
            h('th', null, 'newest due'),
            h('th', { class: 'num' }, 'lag'),
            h('th', null, 'status'),
          ),
        ),
        h(
          'tbody',
          null,
          outcomes.map((o) =>
            h(
              'tr',
              null,
              h('td', null, String(o.horizon)),
              h('td', null, o.newest_filled ? [ageSpan(o.newest_filled, null), ' ago'] : DASH),
              h('td', null, o.newest_due ? [ageSpan(o.newest_due, null), ' ago'] : DASH),
              h('td', { class: 'num' }, fmtDuration(o.lag_s)),
              h('td', null, severityBadge(o.severity)),
            ),
          ),
        ),
      );
    } else {
      table = h('p', { class: 'empty' }, 'no outcome data');
    }
    container.replaceChildren(head, limitsLine, table);
  }

  function renderAlerts(container, alerts) {
    if (!container) return;
    const open = alerts && Array.isArray(alerts.open) ? alerts.open : [];
    if (!open.length) {
      container.replaceChildren(h('p', { class: 'ok-line' }, '✓ no open alerts'));
      return;
    }
    container.replaceChildren(
      h(
        'table',
        { class: 'grid-table' },
        h(
          'thead',
          null,
          h(
            'tr',
            null,
            ['Severity', 'Check', 'Scope', 'Summary', 'Opened', 'Last seen'].map((t) => h('th', null, t)),
          ),
        ),
        h(
          'tbody',
          null,
          open.map((a) =>
            h(
              'tr',
              { class: `alert-row ${severityClass(a.severity)}` },
              h('td', null, severityBadge(a.severity)),
              h('td', null, String(a.check ?? '')),
              h('td', null, String(a.scope ?? '')),
              h('td', { class: 'wrap' }, String(a.summary ?? '')),
              h(
                'td',
                { title: fmtTime(a.opened_at, true) },
                a.opened_at ? [ageSpan(a.opened_at, null), ' ago'] : DASH,
              ),
              h(
                'td',
                { title: fmtTime(a.last_seen, true) },
                a.last_seen ? [ageSpan(a.last_seen, null), ' ago'] : DASH,
              ),
            ),
          ),
        ),
      ),
    );
  }

  // ------------------------------------------------------------------ pages

  async function loadOverview() {
    const data = await getJSON('/api/overview', apiQuery());
    applyChoices(data);
    applyFreshnessLimits(data);
    if (data.freshness && data.freshness.newest_prediction !== undefined) {
      state.newestPrediction = newerIso(state.newestPrediction, data.freshness.newest_prediction);
    }
    applyWindow(data);
    renderSummary(data);
    renderCards($('horizon-cards'), data.horizons);
    drawPerHour($('per-hour'), data.per_hour);
    renderFreshness($('freshness'), data.freshness);
    renderAlerts($('alerts'), data.alerts);
    return data.data_version;
  }

  function drawTimeseriesCharts(series, win) {
    drawMetricChart($('chart-accuracy'), series, 'accuracy', { band: true, base: true, window: win });
    drawMetricChart($('chart-hit-rate'), series, 'hit_rate', { band: true, refLine: 0.5, window: win });
    drawMetricChart($('chart-ic'), series, 'ic', {
      window: win,
      fmt: fmtIC,
      axis: numAxis(2),
      refLine: 0,
      range: (u, min, max) => {
        if (!isNum(min) || !isNum(max)) return [-0.1, 0.1];
        const m = Math.max(Math.abs(min), Math.abs(max), 0.02) * 1.15;
        return [Math.min(min, 0) - m * 0.05, Math.max(max, 0) + m * 0.05].map((v, i) =>
          i === 0 ? Math.min(v, -m * 0.25) : Math.max(v, m * 0.25),
        );
      },
    });
    const nChart = $('chart-n');
    if (nChart) {
      drawMetricChart(nChart, series, 'n', {
        window: win,
        fmt: fmtInt,
        axis: numAxis(0),
        height: 170,
        range: (u, min, max) => [0, Math.max(1, isNum(max) ? max : 1) * 1.1],
      });
    }
  }

  async function loadTimeseries() {
    const [data] = await Promise.all([getJSON('/api/timeseries', apiQuery()), loadChoices()]);
    applyWindow(data);
    const series = Array.isArray(data.series) ? data.series : [];
    const days = series.reduce((n, s) => Math.max(n, Array.isArray(s.t) ? s.t.length : 0), 0);
    renderSummary(
      { generated_at: data.generated_at },
      `${series.length} horizon${series.length === 1 ? '' : 's'}, ${days} day${days === 1 ? '' : 's'}`,
    );
    drawTimeseriesCharts(series, data.window);
    return data.data_version;
  }

  async function loadSymbol() {
    const [overview, ts] = await Promise.all([
      getJSON('/api/overview', apiQuery()),
      getJSON('/api/timeseries', apiQuery()),
    ]);
    applyChoices(overview);
    applyFreshnessLimits(overview);
    applyWindow(overview);
    renderSummary(overview);
    renderCards($('horizon-cards'), overview.horizons);
    drawPerHour($('per-hour'), overview.per_hour);
    renderAlerts($('alerts'), overview.alerts);
    drawTimeseriesCharts(Array.isArray(ts.series) ? ts.series : [], ts.window);
    return overview.data_version;
  }

  /** A bin's mean confidence (the server names it avg_confidence; the contract confidence). */
  function binConfidence(b) {
    if (!b) return null;
    if (isNum(b.confidence)) return b.confidence;
    return isNum(b.avg_confidence) ? b.avg_confidence : null;
  }

  function drawReliability(container, hz) {
    const bins = (Array.isArray(hz.bins) ? hz.bins : [])
      .map((b) => Object.assign({}, b, { confidence: binConfidence(b) }))
      .filter((b) => b && isNum(b.n) && b.n > 0 && isNum(b.confidence));
    if (!bins.length) {
      showEmpty(container);
      return;
    }
    bins.sort((a, b) => a.confidence - b.confidence);
    const edges = (Array.isArray(hz.bins) ? hz.bins : [])
      .flatMap((b) => [b && b.low, b && b.high])
      .filter(isNum);
    const accs = bins.map((b) => b.accuracy).filter(isNum);
    let lo = Math.min(...edges, ...bins.map((b) => b.confidence));
    let hi = Math.max(...edges, ...bins.map((b) => b.confidence));
    lo = Math.max(0, Math.floor(Math.min(lo, ...accs) * 20) / 20);
    hi = Math.min(1, Math.ceil(Math.max(hi, ...accs) * 20) / 20);
    if (hi - lo < 0.1) {
      lo = Math.max(0, lo - 0.05);
      hi = Math.min(1, hi + 0.05);
    }
    const xs = [lo, ...bins.map((b) => b.confidence), hi];
    const acc = [null, ...bins.map((b) => (isNum(b.accuracy) ? b.accuracy : null)), null];
    const style = horizonStyle(hz.horizon, 0);
    const size = Math.max(240, Math.min(340, chartWidth(container) * 0.7));
    mountChart(
      container,
      {
        height: Math.round(size),
        series: [
          { label: 'confidence', value: (u, v) => fmtPct(v) },
          {
            label: 'perfect calibration',
            class: 'diagonal',
            stroke: '#8a9099',
            dash: [5, 4],
            width: 1,
            points: { show: false },
            value: (u, v) => fmtPct(v),
          },
          {
            label: `${hz.horizon} accuracy`,
            stroke: style.color,
            width: 2,
            points: { show: true, size: 9, fill: style.color, stroke: '#fff', width: 1.5 },
            value: (u, v) => fmtPct(v),
          },
        ],
        cursor: { drag: { x: false, y: false } },
        scales: {
          x: { time: false, range: () => [lo, hi] },
          y: { range: () => [lo, hi] },
        },
        axes: [
          Object.assign(pctAxis(), { label: 'mean confidence', labelSize: 18, size: 40 }),
          Object.assign(pctAxis(), { label: 'accuracy', labelSize: 18 }),
        ],
      },
      [xs, xs.slice(), acc],
    );
  }

  function calibrationPanel(hz) {
    const chart = h('div', { class: 'chart chart-square' });
    const bins = Array.isArray(hz.bins) ? hz.bins : [];
    const gap = isNum(hz.avg_confidence) && isNum(hz.accuracy) ? hz.avg_confidence - hz.accuracy : null;
    const stats = h(
      'div',
      { class: 'cal-stats' },
      h('span', null, 'n ', h('strong', null, fmtInt(hz.n))),
      h('span', null, 'mean confidence ', h('strong', null, fmtPct(hz.avg_confidence))),
      h('span', null, 'accuracy ', h('strong', null, fmtPct(hz.accuracy))),
      h('span', null, 'gap ', h('strong', null, fmtPp(gap)), ` ${gapNote(gap)}`),
      h('span', null, 'ECE ', h('strong', null, fmtPct(hz.ece))),
      h('span', null, 'Brier ', h('strong', null, fmtNum(hz.brier, 4))),
    );
    const rows = bins.map((b) => {
      const conf = binConfidence(b);
      const g = isNum(conf) && isNum(b.accuracy) ? conf - b.accuracy : null;
      return h(
        'tr',
        { class: b.n ? '' : 'dim' },
        h('td', null, `${fmtPct(b.low, 0)} – ${fmtPct(b.high, 0)}`),
        h('td', { class: 'num' }, fmtInt(b.n)),
        h('td', { class: 'num' }, fmtPct(conf)),
        h('td', { class: 'num' }, fmtPct(b.accuracy)),
        h(
          'td',
          { class: `num ${isNum(g) && Math.abs(g) >= 0.05 ? (g > 0 ? 'neg' : 'pos') : ''}`.trim() },
          fmtPp(g),
        ),
      );
    });
    const table = bins.length
      ? h(
          'table',
          { class: 'grid-table compact' },
          h(
            'thead',
            null,
            h(
              'tr',
              null,
              h('th', null, 'bin'),
              h('th', { class: 'num' }, 'n'),
              h('th', { class: 'num' }, 'confidence'),
              h('th', { class: 'num' }, 'accuracy'),
              h('th', { class: 'num' }, 'conf − acc'),
            ),
          ),
          h('tbody', null, rows),
        )
      : null;
    const panel = h(
      'section',
      { class: 'panel cal-panel', dataset: { horizon: String(hz.horizon) } },
      h('h2', null, `Horizon ${hz.horizon}`),
      stats,
      chart,
      table,
    );
    return { panel, chart };
  }

  async function loadCalibration() {
    const [data] = await Promise.all([getJSON('/api/calibration', apiQuery()), loadChoices()]);
    applyWindow(data);
    const box = $('calibration');
    if (!box) return data.data_version;
    for (const c of Array.from(charts.keys())) if (box.contains(c)) destroyChart(c);
    const list = Array.isArray(data.horizons) ? data.horizons : [];
    if (!list.length) {
      box.replaceChildren(h('p', { class: 'empty' }, 'no data in this window'));
      return data.data_version;
    }
    const built = list.map(calibrationPanel);
    box.replaceChildren(...built.map((b) => b.panel));
    list.forEach((hz, i) => drawReliability(built[i].chart, hz));
    return data.data_version;
  }

  // ---------------------------------------------------------------- symbols

  function accuracyClass(cell, base) {
    if (!cell || !isNum(base)) return 'cell-within';
    if (isNum(cell.accuracy_low) && cell.accuracy_low > base) return 'cell-above';
    if (isNum(cell.accuracy_high) && cell.accuracy_high < base) return 'cell-below';
    return 'cell-within';
  }
  const ACC_MARK = { 'cell-above': '▲ ', 'cell-below': '▼ ', 'cell-within': '' };

  function sortValue(row, key) {
    if (key === 'symbol') return String(row.symbol ?? '');
    if (key === 'predictions') return isNum(row.predictions) ? row.predictions : null;
    const [hz, field] = key.split(':');
    const cell = row.by_horizon ? row.by_horizon[hz] : null;
    const v = cell ? cell[field] : null;
    return isNum(v) ? v : null;
  }

  function sortRows(rows, sort) {
    const out = rows.slice();
    out.sort((a, b) => {
      const va = sortValue(a, sort.key);
      const vb = sortValue(b, sort.key);
      if (va === null && vb === null) return 0;
      if (va === null) return 1; // nulls last, whatever the direction
      if (vb === null) return -1;
      if (typeof va === 'string' || typeof vb === 'string')
        return String(va).localeCompare(String(vb)) * sort.dir;
      return (va - vb) * sort.dir;
    });
    return out;
  }

  function sortHeader(label, key, extraClass, rowspan) {
    const sort = state.symbolsSort;
    const active = sort.key === key;
    const mark = active ? (sort.dir > 0 ? ' ▲' : ' ▼') : '';
    return h(
      'th',
      {
        class: `sortable ${extraClass || ''} ${active ? 'sorted' : ''}`.trim(),
        'aria-sort': active ? (sort.dir > 0 ? 'ascending' : 'descending') : 'none',
        tabindex: '0',
        dataset: { sortKey: key },
        title: 'click to sort',
        rowspan: rowspan ? String(rowspan) : null,
      },
      label,
      h('span', { class: 'sort-mark' }, mark),
    );
  }

  function onSortClick(ev) {
    const th = ev.target instanceof Element ? ev.target.closest('th[data-sort-key]') : null;
    if (!th) return;
    if (ev.type === 'keydown' && ev.key !== 'Enter' && ev.key !== ' ') return;
    ev.preventDefault();
    const key = th.dataset.sortKey;
    const sort = state.symbolsSort;
    if (sort.key === key) sort.dir = -sort.dir;
    else {
      sort.key = key;
      sort.dir = key === 'symbol' ? 1 : -1;
    }
    renderSymbolsTable();
  }

  function renderSymbolsTable() {
    const box = $('symbols-table');
    const data = state.symbolsData;
    if (!box || !data) return;
    const horizons = Array.isArray(data.horizons) ? data.horizons : [];
    const baseRate = data.base_rate || {};
    const search = $('symbol-search');
    const needle = search ? search.value.trim().toLowerCase() : '';
    let rows = Array.isArray(data.rows) ? data.rows : [];
    const total = rows.length;
    if (needle)
      rows = rows.filter((r) =>
        String(r.symbol ?? '')
          .toLowerCase()
          .includes(needle),
      );
    const summary = $('summary');
    if (summary)
      summary.textContent = `${fmtInt(rows.length)}${needle ? ` of ${fmtInt(total)}` : ''} symbol${total === 1 ? '' : 's'} · click a header to sort`;
    if (!rows.length) {
      box.replaceChildren(h('p', { class: 'empty' }, total ? 'no symbol matches' : 'no data in this window'));
      return;
    }
    rows = sortRows(rows, state.symbolsSort);
    const head1 = h(
      'tr',
      null,
      sortHeader('Symbol', 'symbol', 'group-start', 2),
      sortHeader('Predictions', 'predictions', 'num', 2),
      horizons.map((hz) =>
        h(
          'th',
          { colspan: '3', class: 'group group-start' },
          `${hz}`,
          h('span', { class: 'muted' }, ` · base ${fmtPct(baseRate[hz])}`),
        ),
      ),
    );
    const head2 = h(
      'tr',
      null,
      horizons.map((hz) => [
        sortHeader('accuracy', `${hz}:accuracy`, 'num group-start'),
        sortHeader('n', `${hz}:n`, 'num'),
        sortHeader('IC', `${hz}:ic`, 'num'),
      ]),
    );
    const body = h(
      'tbody',
      null,
      rows.map((row) => {
        const symbol = String(row.symbol ?? '');
        const href = symbolHref(symbol);
        return h(
          'tr',
          { class: 'clickable', dataset: { href } },
          h('td', { class: 'group-start sym' }, h('a', { href }, symbol)),
          h('td', { class: 'num' }, fmtInt(row.predictions)),
          horizons.map((hz) => {
            const cell = row.by_horizon ? row.by_horizon[hz] : null;
            const cls = accuracyClass(cell, baseRate[hz]);
            const acc = cell ? cell.accuracy : null;
            const title = cell
              ? `${hz}: accuracy ${fmtPct(acc)}, 95% CI ${fmtPct(cell.accuracy_low)} – ${fmtPct(cell.accuracy_high)}, base ${fmtPct(baseRate[hz])}, n ${fmtInt(cell.n)}`
              : `${hz}: no data`;
            const ic = cell ? cell.ic : null;
            return [
              h(
                'td',
                { class: `num group-start acc ${isNum(acc) ? cls : ''}`.trim(), title },
                isNum(acc) ? `${ACC_MARK[cls]}${fmtPct(acc)}` : DASH,
              ),
              h('td', { class: 'num muted' }, cell ? fmtInt(cell.n) : DASH),
              h(
                'td',
                { class: `num ${isNum(ic) ? (ic > 0 ? 'pos' : ic < 0 ? 'neg' : '') : ''}`.trim() },
                fmtIC(ic),
              ),
            ];
          }),
        );
      }),
    );
    const table = h(
      'table',
      { class: 'grid-table symbols', id: 'symbols' },
      h('thead', null, head1, head2),
      body,
    );
    table.addEventListener('click', onSortClick);
    table.addEventListener('keydown', onSortClick);
    body.addEventListener('click', (ev) => {
      const target = ev.target instanceof Element ? ev.target : null;
      if (!target || target.closest('a')) return;
      const tr = target.closest('tr[data-href]');
      if (tr) window.location.assign(tr.dataset.href);
    });
    box.replaceChildren(table);
  }

  async function loadSymbols() {
    const [data] = await Promise.all([getJSON('/api/symbols', apiQuery()), loadChoices()]);
    applyWindow(data);
    state.symbolsData = data;
    renderSymbolsTable();
    return data.data_version;
  }

  // --------------------------------------------------------------- versions

  function bestIndex(values, better) {
    let best = -1;
    let count = 0;
    values.forEach((v, i) => {
      if (!isNum(v)) return;
      count += 1;
      if (best < 0 || better(v, values[best])) best = i;
    });
    return count > 1 ? best : -1;
  }

  async function loadVersions() {
    const [data] = await Promise.all([getJSON('/api/versions', apiQuery()), loadChoices()]);
    applyWindow(data);
    const box = $('versions-table');
    const rows = Array.isArray(data.rows) ? data.rows : [];
    const summary = $('summary');
    if (summary)
      summary.textContent = `${fmtInt(rows.length)} model version${rows.length === 1 ? '' : 's'} in the window · ★ best of the versions per row`;
    if (!box) return data.data_version;
    if (!rows.length) {
      box.replaceChildren(h('p', { class: 'empty' }, 'no data in this window'));
      return data.data_version;
    }
    const present = new Set();
    for (const r of rows) for (const k of Object.keys(r.by_horizon || {})) present.add(k);
    const order = state.horizons.filter((hz) => present.has(hz));
    for (const k of present) if (!order.includes(k)) order.push(k);
    const filtersNow = readFilters();
    const head = h(
      'tr',
      null,
      h('th', null, ''),
      rows.map((r) => {
        const name =
          r.model_version === '' || r.model_version === null || r.model_version === undefined
            ? ''
            : String(r.model_version);
        if (!name) return h('th', { class: 'num ver' }, '(none)');
        const q = filterQuery(Object.assign({}, filtersNow, { model_version: name }), true);
        return h(
          'th',
          { class: 'num ver' },
          h('a', { href: withQuery('/', q), title: 'overview of this version' }, name),
        );
      }),
    );
    const line = (label, cells, cls) =>
      h('tr', { class: cls || '' }, h('th', { class: 'row-label' }, label), cells);
    const body = h('tbody', null);
    body.append(
      line(
        'Predictions',
        rows.map((r) => h('td', { class: 'num' }, fmtInt(r.predictions))),
      ),
    );
    body.append(
      line(
        'First day',
        rows.map((r) => h('td', { class: 'num' }, r.first_day ? String(r.first_day) : DASH)),
      ),
    );
    body.append(
      line(
        'Last day',
        rows.map((r) => h('td', { class: 'num' }, r.last_day ? String(r.last_day) : DASH)),
      ),
    );
    const metricRow = (hz, label, field, fmt, better, note) => {
      const values = rows.map((r) => {
        const c = r.by_horizon ? r.by_horizon[hz] : null;
        return c && isNum(c[field]) ? c[field] : null;
      });
      const best = better ? bestIndex(values, better) : -1;
      return line(
        label,
        rows.map((r, i) => {
          const c = r.by_horizon ? r.by_horizon[hz] : null;
          return h(
            'td',
            { class: `num ${i === best ? 'best' : ''}`.trim() },
            i === best ? '★ ' : '',
            fmt(values[i]),
            note && c ? h('span', { class: 'cell-note' }, note(c)) : null,
          );
        }),
      );
    };
    for (const hz of order) {
      body.append(
        h('tr', { class: 'group-row' }, h('th', { colspan: String(rows.length + 1) }, `Horizon ${hz}`)),
      );
      body.append(metricRow(hz, 'n', 'n', fmtInt, null));
      body.append(
        metricRow(
          hz,
          'accuracy',
          'accuracy',
          fmtPct,
          (a, b) => a > b,
          (c) =>
            isNum(c.accuracy_low) && isNum(c.accuracy_high)
              ? `${fmtPct(c.accuracy_low)} – ${fmtPct(c.accuracy_high)}`
              : '',
        ),
      );
      body.append(metricRow(hz, 'IC', 'ic', fmtIC, (a, b) => a > b));
      body.append(
        metricRow(
          hz,
          'Brier',
          'brier',
          (v) => fmtNum(v, 4),
          (a, b) => a < b,
        ),
      );
    }
    box.replaceChildren(
      h('table', { class: 'grid-table versions', id: 'versions' }, h('thead', null, head), body),
    );
    return data.data_version;
  }

  // ------------------------------------------------------------------- feed

  function directionMark(dir) {
    const d = String(dir ?? '').toLowerCase();
    if (['up', 'long', 'buy', '1', 'bull', 'bullish', 'rise'].includes(d)) return '▲';
    if (['down', 'short', 'sell', '-1', 'bear', 'bearish', 'fall'].includes(d)) return '▼';
    if (!d) return '';
    return '◆';
  }

  function outcomeState(o, now) {
    if (!o) return 'none';
    if (o.correct === true) return 'correct';
    if (o.correct === false) return 'wrong';
    if (o.actual_direction !== null && o.actual_direction !== undefined) return 'filled';
    const due = parseTime(o.due_at);
    if (due !== null && now < due) return 'pending';
    return 'waiting';
  }

  function fillOutcomeCell(td, o, now) {
    const st = outcomeState(o, now);
    td.className = `outcome oc-${st}`;
    td.dataset.state = st;
    if (st === 'correct' || st === 'wrong' || st === 'filled') {
      const mark = st === 'correct' ? '✓' : st === 'wrong' ? '✗' : directionMark(o.actual_direction) || '·';
      td.replaceChildren(`${mark} ${fmtRet(o.actual_return)}`);
      td.title = `actual ${o.actual_direction ?? DASH} ${fmtRet(o.actual_return)}`;
    } else if (st === 'pending') {
      const due = parseTime(o.due_at);
      td.replaceChildren('○ pending');
      td.title = `due ${fmtTime(o.due_at, true)} UTC`;
      td.dataset.dueAt = String(due);
    } else if (st === 'waiting') {
      td.replaceChildren('… waiting');
      td.title = `due ${fmtTime(o.due_at, true)} UTC, no outcome yet`;
    } else {
      td.replaceChildren(DASH);
    }
    return st;
  }

  function feedHorizons() {
    const chosen = readFilters().horizon;
    return chosen ? [chosen] : state.horizons;
  }

  async function loadFeed() {
    const filters = readFilters();
    const q = new URLSearchParams();
    if (filters.symbol) q.set('symbol', filters.symbol);
    if (filters.model_version) q.set('model_version', filters.model_version);
    q.set('limit', String(state.feedLimit));
    const [data] = await Promise.all([getJSON('/api/feed', q.toString()), loadChoices()]);
    const box = $('feed-table');
    const rows = Array.isArray(data.rows) ? data.rows : [];
    const summary = $('summary');
    if (summary)
      summary.textContent = `newest ${fmtInt(rows.length)} predictions · ${filters.symbol ? `symbol ${filters.symbol}` : 'all symbols'} (the window filter does not apply here)`;
    if (!box) return data.data_version;
    if (!rows.length) {
      box.replaceChildren(h('p', { class: 'empty' }, 'no predictions yet'));
      state.feedSeen = new Set();
      return data.data_version;
    }
    const horizons = feedHorizons();
    const now = Date.now();
    const seen = state.feedSeen;
    const nextSeen = new Set();
    const nextOutcomes = new Map();
    const head1 = h(
      'tr',
      null,
      ['Time (UTC)', 'Symbol', 'Model', 'Signal'].map((t) => h('th', { rowspan: '2' }, t)),
      horizons.map((hz) => h('th', { colspan: '2', class: 'group group-start' }, hz)),
    );
    const head2 = h(
      'tr',
      null,
      horizons.map(() => [h('th', { class: 'group-start' }, 'predicted'), h('th', null, 'outcome')]),
    );
    const body = h('tbody', null);
    for (const row of rows) {
      const id = row.id;
      nextSeen.add(id);
      const isNew = seen !== null && !seen.has(id);
      const symbol = String(row.symbol ?? '');
      const tr = h(
        'tr',
        { class: isNew ? 'row-new' : '', dataset: { id: String(id) } },
        h(
          'td',
          { class: 'nowrap', title: row.datetime ? String(row.datetime) : '' },
          fmtTime(row.datetime, true),
        ),
        h('td', { class: 'sym' }, h('a', { href: symbolHref(symbol) }, symbol)),
        h('td', { class: 'muted' }, row.model_version ? String(row.model_version) : '(none)'),
        h(
          'td',
          null,
          row.signal_type ? String(row.signal_type) : DASH,
          isNum(row.signal_confidence)
            ? h('span', { class: 'muted' }, ` ${fmtPct(row.signal_confidence, 0)}`)
            : null,
        ),
      );
      for (const hz of horizons) {
        const o = row.by_horizon ? row.by_horizon[hz] : null;
        let pred = DASH;
        let predTitle = '';
        const mark = o ? directionMark(o.predicted_direction) : '';
        if (o) {
          const hasDir = o.predicted_direction !== null && o.predicted_direction !== undefined;
          const ret = isNum(o.predicted_return) ? fmtRet(o.predicted_return) : '';
          pred = [
            mark,
            ret,
            isNum(o.confidence) ? h('span', { class: 'muted' }, fmtPct(o.confidence, 0)) : null,
          ].filter(Boolean);
          if (!pred.length) pred = DASH;
          else pred = pred.flatMap((p, i) => (i ? [' ', p] : [p]));
          predTitle = `${hz}: ${hasDir ? String(o.predicted_direction) : 'no direction'}, predicted return ${fmtRet(o.predicted_return)}, confidence ${fmtPct(o.confidence)}, due ${fmtTime(o.due_at, true)} UTC`;
        }
        const dirClass = mark === '▲' ? 'dir-up' : mark === '▼' ? 'dir-down' : '';
        const predTd = h(
          'td',
          { class: `group-start pred ${dirClass}`.trim(), title: predTitle || null },
          pred,
        );
        const outTd = h('td', { dataset: { horizon: hz } });
        const st = fillOutcomeCell(outTd, o, now);
        const key = `${id}:${hz}`;
        const before = state.feedOutcomes.get(key);
        if (before && before !== st && (st === 'correct' || st === 'wrong' || st === 'filled'))
          outTd.classList.add('cell-filled');
        nextOutcomes.set(key, st);
        tr.append(predTd, outTd);
      }
      body.append(tr);
    }
    state.feedSeen = nextSeen;
    state.feedOutcomes = nextOutcomes;
    box.replaceChildren(
      h('table', { class: 'grid-table feed', id: 'feed' }, h('thead', null, head1, head2), body),
    );
    return data.data_version;
  }

  // ----------------------------------------------------------- page loading

  const LOADERS = {
    overview: loadOverview,
    timeseries: loadTimeseries,
    calibration: loadCalibration,
    symbols: loadSymbols,
    symbol: loadSymbol,
    versions: loadVersions,
    feed: loadFeed,
  };

  function requestRefresh(force) {
    if (force) state.forceReload = true;
    if (state.loading) return;
    runRefresh().catch((err) => handleFailure(err));
  }

  async function runRefresh() {
    const loader = LOADERS[state.page];
    if (!loader || state.authExpired) return;
    state.loading = true;
    document.body.classList.add('is-loading');
    try {
      for (let round = 0; round < 3; round += 1) {
        const stale = state.eventVersion !== null && state.eventVersion !== state.renderedVersion;
        if (!state.forceReload && !stale) break;
        state.forceReload = false;
        try {
          const version = await loader();
          state.renderedVersion = typeof version === 'string' ? version : state.eventVersion;
          state.errorSource = null;
          clearError();
        } catch (err) {
          handleFailure(err);
          break;
        }
        // a newer event may have arrived while loading; the loop then goes once more
        if (state.eventVersion === null || state.eventVersion === state.renderedVersion) {
          if (!state.forceReload) break;
        }
      }
    } finally {
      state.loading = false;
      document.body.classList.remove('is-loading');
    }
  }

  // ------------------------------------------------------------ live events

  function setConnection(kind, text) {
    const node = $('connection');
    if (!node) return;
    node.className = `conn conn-${kind}`;
    node.textContent = text;
  }

  function newerIso(a, b) {
    const ta = parseTime(a);
    const tb = parseTime(b);
    if (tb === null) return ta === null ? (b ?? a) : a;
    if (ta === null || tb >= ta) return b;
    return a;
  }

  /** The poller's state, from /api/status or a `status` event. */
  function applyStatus(msg) {
    if (!msg || typeof msg !== 'object') return;
    if (typeof msg.polled_at === 'string') state.lastPolledAt = newerIso(state.lastPolledAt, msg.polled_at);
    if (msg.newest_prediction !== undefined) state.newestPrediction = msg.newest_prediction;
    if (typeof msg.error === 'string' && msg.error) {
      state.serverError = msg.error;
      showError(`server cannot read the data: ${msg.error}`);
    } else if (state.serverError) {
      state.serverError = null;
      clearError();
    }
    tick();
    if (typeof msg.data_version === 'string') {
      state.eventVersion = msg.data_version;
      if (msg.data_version !== state.renderedVersion) requestRefresh(false);
    }
  }

  /** Polled every refresh interval: keeps "updated N s ago" true on a quiet database
   * (events only come on changes) and catches changes when the stream is down. */
  async function pollStatus() {
    if (state.authExpired || state.statusBusy) return;
    state.statusBusy = true;
    try {
      const status = await getJSON('/api/status');
      if (state.errorSource === 'status') {
        state.errorSource = null;
        clearError();
      }
      applyStatus(status);
    } catch (err) {
      handleFailure(err, 'status');
    } finally {
      state.statusBusy = false;
    }
  }

  function onStatusEvent(ev) {
    try {
      applyStatus(JSON.parse(ev.data));
    } catch (err) {
      showError(`live update: malformed event (${describeError(err)})`);
    }
  }

  function onUpdateEvent(ev) {
    let msg;
    try {
      msg = JSON.parse(ev.data);
    } catch (err) {
      showError(`live update: malformed event (${describeError(err)})`);
      return;
    }
    if (!msg || typeof msg !== 'object') return;
    if (typeof msg.polled_at === 'string') state.lastPolledAt = newerIso(state.lastPolledAt, msg.polled_at);
    state.lastEventAt = Date.now();
    if (state.serverError && !msg.error) {
      state.serverError = null;
      clearError();
    }
    if (msg.newest_prediction !== undefined) state.newestPrediction = msg.newest_prediction;
    setConnection('live', '● live');
    tick();
    if (typeof msg.data_version === 'string') {
      state.eventVersion = msg.data_version;
      if (msg.data_version !== state.renderedVersion) requestRefresh(false);
    }
  }

  function stopEvents() {
    if (state.reconnectTimer) {
      window.clearTimeout(state.reconnectTimer);
      state.reconnectTimer = null;
    }
    if (state.es) {
      state.es.close();
      state.es = null;
    }
  }

  function connectEvents() {
    if (state.authExpired) return;
    if (typeof window.EventSource !== 'function') {
      setConnection('closed', '✖ no live updates');
      return;
    }
    stopEvents();
    let es;
    try {
      es = new window.EventSource('/events');
    } catch (err) {
      setConnection('reconnecting', '◌ reconnecting');
      state.reconnectTimer = window.setTimeout(connectEvents, 3000);
      return;
    }
    state.es = es;
    es.addEventListener('open', () => setConnection('live', '● live'));
    es.addEventListener('update', onUpdateEvent);
    // every poll without a change: restarts "updated N s ago" (and catches a missed update)
    es.addEventListener('tick', onUpdateEvent);
    es.addEventListener('status', onStatusEvent);
    es.addEventListener('error', () => {
      if (state.es !== es) return;
      setConnection('reconnecting', '◌ reconnecting');
      if (es.readyState === window.EventSource.CLOSED) {
        es.close();
        state.es = null;
        if (state.reconnectTimer) window.clearTimeout(state.reconnectTimer);
        state.reconnectTimer = window.setTimeout(() => {
          state.reconnectTimer = null;
          connectEvents();
          // a 401 closes the stream at once: find out with an API call
          if (!state.authExpired) pollStatus();
        }, 3000);
      }
    });
  }

  // ------------------------------------------------------------------ ticker

  function updateAge(node, now) {
    const from = parseTime(node.dataset.ageFrom);
    if (from === null) {
      node.textContent = DASH;
      return;
    }
    const age = (now - from) / 1000;
    const warn = Number(node.dataset.warnAfter);
    const crit = Number(node.dataset.critAfter);
    let cls = '';
    let mark = '';
    if (node.dataset.critAfter !== undefined && Number.isFinite(crit) && age > crit) {
      cls = 'sev-critical';
      mark = '✖ ';
    } else if (node.dataset.warnAfter !== undefined && Number.isFinite(warn) && age > warn) {
      cls = 'sev-warning';
      mark = '⚠ ';
    } else if (node.dataset.warnAfter !== undefined) {
      cls = 'sev-ok';
      mark = '✓ ';
    }
    node.textContent = `${mark}${fmtAge(age)}`;
    node.classList.remove('sev-ok', 'sev-warning', 'sev-critical');
    if (cls) node.classList.add(cls);
  }

  function tick() {
    const now = Date.now();
    const updated = $('updated');
    if (updated) {
      const polled = parseTime(state.lastPolledAt);
      if (polled === null) {
        updated.textContent = 'updated –';
        updated.classList.remove('stale');
      } else {
        const n = (now - polled) / 1000;
        const stale = n > 3 * state.refreshS;
        updated.textContent = `${stale ? '⚠ ' : ''}updated ${fmtAge(n)} ago`;
        updated.classList.toggle('stale', stale);
      }
    }
    const newest = $('newest');
    if (newest) {
      const t = parseTime(state.newestPrediction);
      newest.classList.remove('sev-ok', 'sev-warning', 'sev-critical');
      if (t === null) {
        newest.textContent =
          state.newestPrediction === null && state.lastPolledAt
            ? 'no predictions yet'
            : 'newest prediction –';
      } else {
        const age = (now - t) / 1000;
        const lim = state.predictionLimits || {};
        let mark = '';
        if (isNum(lim.critical_after_s) && age > lim.critical_after_s) {
          newest.classList.add('sev-critical');
          mark = '✖ ';
        } else if (isNum(lim.warning_after_s) && age > lim.warning_after_s) {
          newest.classList.add('sev-warning');
          mark = '⚠ ';
        } else if (state.predictionLimits) {
          newest.classList.add('sev-ok');
        }
        newest.textContent = `${mark}newest prediction ${fmtAge(age)} ago`;
      }
    }
    for (const node of document.querySelectorAll('[data-age-from]')) updateAge(node, now);
    for (const td of document.querySelectorAll('td.oc-pending[data-due-at]')) {
      const due = Number(td.dataset.dueAt);
      if (Number.isFinite(due) && now >= due) {
        td.className = 'outcome oc-waiting';
        td.dataset.state = 'waiting';
        delete td.dataset.dueAt;
        td.textContent = '… waiting';
      }
    }
  }

  // -------------------------------------------------------------------- init

  function init() {
    if (!content || !LOADERS[state.page]) return;
    const hz = content.dataset.horizons;
    state.horizons = hz ? hz.split(',').filter(Boolean) : ['15m', '1h', '4h', '12h'];
    if (form) {
      form.addEventListener('change', (ev) => {
        if (ev.target instanceof Element && ev.target.closest('select')) onFiltersChanged();
      });
      form.addEventListener('submit', (ev) => {
        ev.preventDefault();
        onFiltersChanged();
      });
    }
    const search = $('symbol-search');
    if (search) search.addEventListener('input', () => renderSymbolsTable());
    const limit = $('feed-limit');
    if (limit) {
      state.feedLimit = Number(limit.value) || 50;
      limit.addEventListener('change', () => {
        state.feedLimit = Number(limit.value) || 50;
        state.feedSeen = null;
        requestRefresh(true);
      });
    }
    updateNavLinks();
    window.setInterval(() => {
      try {
        tick();
      } catch (err) {
        showError(`display: ${describeError(err)}`);
      }
    }, 1000);
    window.addEventListener('resize', () => {
      for (const c of charts.keys()) resizeChart(c);
    });
    tick();
    requestRefresh(true);
    connectEvents();
    pollStatus();
  }

  window.addEventListener('error', (ev) => {
    showError(`page error: ${ev.message || 'unknown'}`);
  });
  window.addEventListener('unhandledrejection', (ev) => {
    ev.preventDefault();
    showError(describeError(ev.reason));
  });

  try {
    init();
  } catch (err) {
    showError(`page setup failed: ${describeError(err)}`);
  }
})();
