// Small canvas charts for the built-in dashboard (no libraries, no CDN).
"use strict";

const Charts = (() => {
  const PALETTE = ["#2f6fde", "#e0892b", "#2e9e6b", "#b64fc8", "#d64545", "#6b7a99"];
  const AXIS = "#8a93a8";

  function setup(canvas) {
    const ctx = canvas.getContext("2d");
    ctx.clearRect(0, 0, canvas.width, canvas.height);
    ctx.font = "12px system-ui, sans-serif";
    return ctx;
  }

  function nice(value) {
    if (!isFinite(value) || value === 0) return "0";
    const abs = Math.abs(value);
    if (abs >= 1e6) return (value / 1e6).toFixed(1) + "M";
    if (abs >= 1e3) return (value / 1e3).toFixed(1) + "k";
    if (abs >= 1) return value.toFixed(2);
    return value.toPrecision(2);
  }

  function empty(ctx, canvas, text) {
    ctx.fillStyle = AXIS;
    ctx.fillText(text || "no data yet", canvas.width / 2 - 30, canvas.height / 2);
  }

  // series: [{name, values: number[], color?}]; each series gets its own scale (left, then right axis).
  function line(canvas, labels, series) {
    const ctx = setup(canvas);
    canvas.dataset.values = JSON.stringify({ labels, series });
    if (!labels.length) return empty(ctx, canvas);
    const pad = { l: 56, r: 56, t: 14, b: 26 };
    const w = canvas.width - pad.l - pad.r;
    const h = canvas.height - pad.t - pad.b;
    ctx.strokeStyle = AXIS;
    ctx.strokeRect(pad.l, pad.t, w, h);
    series.forEach((s, i) => {
      const max = Math.max(...s.values, 0) || 1;
      const color = s.color || PALETTE[i % PALETTE.length];
      ctx.strokeStyle = color;
      ctx.lineWidth = 2;
      ctx.beginPath();
      s.values.forEach((v, j) => {
        const x = pad.l + (labels.length === 1 ? w / 2 : (j / (labels.length - 1)) * w);
        const y = pad.t + h - (v / max) * h;
        j ? ctx.lineTo(x, y) : ctx.moveTo(x, y);
      });
      ctx.stroke();
      ctx.fillStyle = color;
      s.values.forEach((v, j) => { // points too, so a single minute still shows
        const x = pad.l + (labels.length === 1 ? w / 2 : (j / (labels.length - 1)) * w);
        ctx.beginPath();
        ctx.arc(x, pad.t + h - (v / max) * h, 3, 0, 2 * Math.PI);
        ctx.fill();
      });
      ctx.fillStyle = color;
      const side = i === 0 ? 4 : canvas.width - pad.r + 4;
      ctx.fillText(nice(max), side, pad.t + 10);
      ctx.fillText(s.name, pad.l + 8 + i * 140, canvas.height - 6);
    });
    ctx.fillStyle = AXIS;
    ctx.fillText(labels[0], pad.l, canvas.height - 6 - 14);
    ctx.fillText(labels[labels.length - 1], canvas.width - pad.r - 110, canvas.height - 6 - 14);
  }

  // Horizontal bars; negative values (a loss) in red.
  function bars(canvas, labels, values, format) {
    const ctx = setup(canvas);
    canvas.dataset.values = JSON.stringify({ labels, values });
    if (!labels.length) return empty(ctx, canvas);
    const pad = { l: 120, r: 80, t: 8, b: 8 };
    const w = canvas.width - pad.l - pad.r;
    const row = (canvas.height - pad.t - pad.b) / labels.length;
    const max = Math.max(...values.map(Math.abs), 0) || 1;
    labels.forEach((label, i) => {
      const v = values[i];
      const y = pad.t + i * row;
      const len = (Math.abs(v) / max) * w;
      ctx.fillStyle = v < 0 ? "#d64545" : PALETTE[i % PALETTE.length];
      ctx.fillRect(pad.l, y + row * 0.15, Math.max(len, 1), row * 0.7);
      ctx.fillStyle = "#1c2330";
      ctx.fillText(String(label).slice(0, 16), 4, y + row * 0.6);
      ctx.fillText((format || nice)(v), pad.l + len + 6, y + row * 0.6);
    });
  }

  return { line, bars, nice };
})();
