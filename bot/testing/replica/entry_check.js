// The replicas' entry check: what a platform's detection script reads of a browser and of the input it
// receives before "Ask to join" / Join. Nobody outside Google and Zoom knows their checks; these are the
// signals peers report being caught by (docs: bot-detection.md), read the way such scripts read them.
//
//   ReplicaEntryCheck.report() -> {signals: {...}, findings: ["webdriver", ...]}
//
// Findings (any one marks the browser as a bot, except those in TOLERATED):
//   webdriver            navigator.webdriver is true (automation switches on)
//   headless_ua          "Headless" in the user agent or its client hints
//   ua_mismatch          the user agent's Chrome version differs from the client hints' (an override)
//   no_window_frame      the window is exactly as large as the page (no tabs, no toolbar: headless)
//   odd_screen           a screen smaller than any desktop, or a window larger than its screen
//   languages            navigator.languages empty or not starting with navigator.language
//   no_chrome_object     a Chrome user agent without window.chrome
//   untrusted_input      clicks or keys made by a script (isTrusted false)
//   click_without_path   a button pressed with fewer than 3 pointer moves since the last click
//   pointer_teleport     a press far from where the pointer last moved
//   machine_typing       keys pressed at machine speed (median < 35 ms apart) or held for no time
//   software_webgl       WebGL renders in software (SwiftShader/llvmpipe): true of every server
//                        without a GPU; tolerated here (TOLERATED), as it must be for any cloud bot
"use strict";

(() => {
  const TOLERATED = ["software_webgl"];
  const input = {
    moves: 0,           // pointer moves since the last button release (or the page load)
    last: null,         // where the pointer last moved {x, y}
    presses: [],        // per press: {moves, jump}
    untrusted: 0,
    keyDowns: [],       // timestamps of keydowns
    holds: [],          // keyup - keydown per key
    down: new Map(),
  };
  const on = (type, fn) => addEventListener(type, fn, { capture: true, passive: true });
  on("mousemove", (e) => { input.moves += 1; input.last = { x: e.clientX, y: e.clientY }; });
  on("mousedown", (e) => {
    if (!e.isTrusted) input.untrusted += 1;
    const jump = input.last ? Math.hypot(e.clientX - input.last.x, e.clientY - input.last.y) : Infinity;
    input.presses.push({ moves: input.moves, jump });
  });
  on("mouseup", () => { input.moves = 0; });
  on("click", (e) => { if (!e.isTrusted) input.untrusted += 1; });
  on("keydown", (e) => {
    if (!e.isTrusted) input.untrusted += 1;
    if (e.repeat) return;
    input.keyDowns.push(e.timeStamp);
    input.down.set(e.code || e.key, e.timeStamp);
  });
  on("keyup", (e) => {
    const t = input.down.get(e.code || e.key);
    if (t !== undefined) { input.holds.push(e.timeStamp - t); input.down.delete(e.code || e.key); }
  });

  function median(xs) {
    if (!xs.length) return null;
    const s = [...xs].sort((a, b) => a - b);
    return s[Math.floor(s.length / 2)];
  }

  function webglRenderer() {
    try {
      const gl = document.createElement("canvas").getContext("webgl");
      const ext = gl && gl.getExtension("WEBGL_debug_renderer_info");
      return ext ? String(gl.getParameter(ext.UNMASKED_RENDERER_WEBGL)) : "";
    } catch (e) {
      return "";
    }
  }

  function signals() {
    const ua = navigator.userAgent;
    const data = navigator.userAgentData || null;
    const brands = data ? data.brands.map((b) => `${b.brand} ${b.version}`) : [];
    const uaMajor = (ua.match(/Chrome\/(\d+)/) || [])[1] || "";
    const hintMajor = data ? ((data.brands.find((b) => /Chrom/.test(b.brand)) || {}).version || "") : "";
    const gaps = input.keyDowns.slice(1).map((t, i) => t - input.keyDowns[i]);
    return {
      webdriver: navigator.webdriver === true,
      userAgent: ua,
      brands,
      platform: data ? data.platform : "",
      uaMajor,
      hintMajor,
      languages: [...navigator.languages],
      language: navigator.language,
      chromeObject: typeof window.chrome !== "undefined",
      outer: [outerWidth, outerHeight],
      inner: [innerWidth, innerHeight],
      screen: [screen.width, screen.height],
      devicePixelRatio,
      webgl: webglRenderer(),
      presses: input.presses.map((p) => ({ moves: p.moves, jump: Number.isFinite(p.jump) ? Math.round(p.jump) : -1 })),
      untrusted: input.untrusted,
      keys: input.keyDowns.length,
      keyGapMedianMs: median(gaps),
      keyHoldMedianMs: median(input.holds),
    };
  }

  function findings(s) {
    const out = [];
    if (s.webdriver) out.push("webdriver");
    if (/headless/i.test(s.userAgent) || s.brands.some((b) => /headless/i.test(b))) out.push("headless_ua");
    if (s.hintMajor && s.uaMajor && s.hintMajor !== s.uaMajor) out.push("ua_mismatch");
    if (s.outer[1] - s.inner[1] < 40 && s.outer[0] - s.inner[0] < 16) out.push("no_window_frame");
    if (s.screen[0] < 800 || s.screen[1] < 600 || s.outer[0] > s.screen[0] + 16 || s.outer[1] > s.screen[1] + 16) {
      out.push("odd_screen");
    }
    if (!s.languages.length || s.languages[0] !== s.language) out.push("languages");
    if (/Chrome\//.test(s.userAgent) && !s.chromeObject) out.push("no_chrome_object");
    if (s.untrusted > 0) out.push("untrusted_input");
    if (s.presses.some((p) => p.moves < 3)) out.push("click_without_path");
    if (s.presses.some((p) => p.jump < 0 || p.jump > 20)) out.push("pointer_teleport");
    if (s.keys >= 4 && ((s.keyGapMedianMs !== null && s.keyGapMedianMs < 35) ||
                        (s.keyHoldMedianMs !== null && s.keyHoldMedianMs < 8))) {
      out.push("machine_typing");
    }
    if (/swiftshader|llvmpipe|software/i.test(s.webgl)) out.push("software_webgl");
    return out;
  }

  window.ReplicaEntryCheck = {
    TOLERATED,
    report() {
      const s = signals();
      const all = findings(s);
      return { signals: s, findings: all, bot: all.some((f) => !TOLERATED.includes(f)) };
    },
  };
})();
