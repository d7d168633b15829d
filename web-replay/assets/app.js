// Gatehouse web app: the player and live pages. Loaded as a file (the CSP
// allows no inline script); every value comes from data- attributes the
// server escaped. Recorded text is only ever set as text, never as HTML.
"use strict";

(function () {
  const el = document.getElementById("player");
  if (!el || typeof AsciinemaPlayer === "undefined") {
    return;
  }
  const d = el.dataset;

  // The matches of `q` on the terminal's text, highlighted with the CSS
  // Custom Highlight API: no change to the player's DOM.
  function highlight(q) {
    if (!q || typeof CSS === "undefined" || !CSS.highlights) {
      return 0;
    }
    const text = el.querySelector(".ap-term-text");
    if (!text) {
      return 0;
    }
    const ranges = [];
    const smart = q !== q.toLowerCase();
    const needle = smart ? q : q.toLowerCase();
    // Lines are split into spans by style: search each line's whole text,
    // then map the match back onto its text nodes.
    const lines = text.querySelectorAll(".ap-line");
    for (const line of lines) {
      const nodes = [];
      let all = "";
      const w = document.createTreeWalker(line, NodeFilter.SHOW_TEXT);
      for (let n = w.nextNode(); n; n = w.nextNode()) {
        nodes.push([n, all.length]);
        all += n.data;
      }
      const hay = smart ? all : all.toLowerCase();
      for (let at = hay.indexOf(needle); at >= 0; at = hay.indexOf(needle, at + needle.length)) {
        const end = at + needle.length;
        const r = new Range();
        const start = nodes.findLast(([, off]) => off <= at);
        const stop = nodes.findLast(([, off]) => off < end);
        if (!start || !stop) {
          continue;
        }
        r.setStart(start[0], at - start[1]);
        r.setEnd(stop[0], end - stop[1]);
        ranges.push(r);
      }
    }
    CSS.highlights.set("gatehouse-match", new Highlight(...ranges));
    el.dataset.highlights = String(ranges.length);
    return ranges.length;
  }

  function screenText() {
    const lines = el.querySelectorAll(".ap-term-text .ap-line");
    return Array.from(lines, (l) => l.textContent.replace(/\s+$/, "")).join("\n");
  }

  // Waits until the terminal shows `q` (or a moment passes), then marks
  // it; the page is then "ready" for whoever waits on it.
  function settle(q) {
    let tries = 0;
    function check() {
      tries += 1;
      const found = q ? highlight(q) : 0;
      if (found > 0 || tries > 40) {
        el.dataset.state = "ready";
        return;
      }
      window.setTimeout(check, 50);
    }
    window.requestAnimationFrame(check);
  }

  if (d.live) {
    AsciinemaPlayer.create({ driver: "eventsource", url: d.live, bufferTime: 0 }, el, {
      autoPlay: true,
      fit: "width",
      terminalFontSize: "small",
    });
    el.dataset.state = "ready";
    const state = document.getElementById("live-state");
    const poll = () => {
      fetch(d.status, { credentials: "same-origin" })
        .then((r) => r.json())
        .then((s) => {
          if (s.state === "live") {
            window.setTimeout(poll, 2000);
          } else if (state) {
            state.textContent = "ended: " + (s.ended || s.state);
            state.dataset.ended = "1";
          }
        })
        .catch(() => window.setTimeout(poll, 5000));
    };
    window.setTimeout(poll, 1000);
    return;
  }

  // A recording: play it; speed and idle skipping need a new player,
  // which starts where the old one was.
  let player = null;
  let speed = 1;
  let idle = undefined;
  const start = d.t ? parseFloat(d.t) : 0;
  const markers = JSON.parse(d.markers || "[]");

  function make(at, playing) {
    if (player) {
      player.dispose();
    }
    el.dataset.state = "loading";
    player = AsciinemaPlayer.create({ url: d.cast }, el, {
      // The terminal model's size: a recording made without a client
      // terminal says 0x0 in its header, and is drawn at 80x24.
      cols: parseInt(d.cols, 10) || undefined,
      rows: parseInt(d.rows, 10) || undefined,
      fit: "width",
      terminalFontSize: "small",
      speed: speed,
      idleTimeLimit: idle,
      markers: markers,
      preload: true,
    });
    return player.seek(at).then(() => {
      if (playing) {
        return player.play();
      }
      return null;
    });
  }

  make(start, false).then(() => settle(d.q));

  const speedSel = document.getElementById("speed");
  if (speedSel) {
    speedSel.addEventListener("change", () => {
      speed = parseFloat(speedSel.value);
      make(player.getCurrentTime(), true);
    });
  }
  const idleBox = document.getElementById("idle");
  if (idleBox) {
    idleBox.addEventListener("change", () => {
      idle = idleBox.checked ? 2 : undefined;
      make(player.getCurrentTime(), true);
    });
  }
  const copy = document.getElementById("copy");
  if (copy) {
    copy.addEventListener("click", () => {
      if (navigator.clipboard) {
        navigator.clipboard.writeText(screenText());
      }
    });
  }

  // The find bar: where the text appeared, from the server's terminal
  // model; each hit seeks to the moment the line showed it.
  const find = document.getElementById("find");
  const input = document.getElementById("find-q");
  const status = document.getElementById("find-status");
  let hits = [];
  let current = -1;
  let asked = "";
  function show(i) {
    if (hits.length === 0) {
      status.textContent = "no match";
      return;
    }
    current = (i + hits.length) % hits.length;
    const h = hits[current];
    status.textContent =
      current + 1 + "/" + hits.length + " at " + clock(h.time) + (h.alternate ? " (full-screen program)" : "");
    player.pause();
    el.dataset.state = "seeking";
    // A millisecond past the moment: the step that showed the text is in.
    player.seek(h.time + 0.001).then(() => settle(asked));
  }
  function clock(t) {
    const s = Math.floor(t);
    const mm = Math.floor(s / 60) % 60;
    const ss = String(s % 60).padStart(2, "0");
    const h = Math.floor(s / 3600);
    return h > 0 ? h + ":" + String(mm).padStart(2, "0") + ":" + ss : mm + ":" + ss;
  }
  function search(then) {
    const q = input.value;
    if (q === asked) {
      then();
      return;
    }
    asked = q;
    fetch(d.find + "&q=" + encodeURIComponent(q), { credentials: "same-origin" })
      .then((r) => (r.ok ? r.json() : []))
      .then((list) => {
        hits = list;
        current = -1;
        then();
      });
  }
  function next(forward) {
    search(() => {
      const now = player.getCurrentTime();
      if (forward) {
        const i = hits.findIndex((h) => h.time > now + 0.0005);
        show(i < 0 ? 0 : i);
      } else {
        const i = hits.findLastIndex((h) => h.time < now - 0.0015);
        show(i < 0 ? hits.length - 1 : i);
      }
    });
  }
  if (find) {
    find.addEventListener("submit", (e) => {
      e.preventDefault();
      search(() => show(0));
    });
    document.getElementById("find-next").addEventListener("click", () => next(true));
    document.getElementById("find-prev").addEventListener("click", () => next(false));
  }
})();
