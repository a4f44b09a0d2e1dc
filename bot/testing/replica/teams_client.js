// Microsoft Teams light-meetings client replica: pre-join (name, camera and mic switches, Computer audio /
// Don't use audio, Join now), the "Continue without audio or video" modal, lobby, call (People, Leave,
// mic button, alert toasts), retry and message screens, driven by the replica server over its room
// connection (`ReplicaRoom`, shared with the Meet and Zoom replicas).
// The page runs under a Trusted Types CSP, as the real light client: no HTML strings anywhere here.
// Audio: Teams sends one mixed stream. Each peer's track (room.js keeps one connection per peer) feeds one
// Web Audio mix, which plays on the page's output; room.js's own per-peer elements stay muted and out of
// the page (they only keep the remote tracks flowing), so every word is played once. (The mix plays from
// the AudioContext itself: through a MediaStreamDestination and an <audio>, it dropped 30-40 ms every
// ~0.4 s in half the runs.)
"use strict";

(() => {
  const cfg = JSON.parse(document.getElementById("teams-config").textContent);
  const $ = (s) => document.querySelector(s);
  const show = (el, on = true) => { el.hidden = !on; };
  const screens = ["#loading", "#prejoin", "#call", "#retry", "#message"];
  const only = (sel) => screens.forEach((s) => show($(s), s === sel));

  let room = null;        // the replica room connection, once "Join now" is answered
  let mic = null;         // the microphone stream (null: none, or "Don't use audio")
  let micOn = cfg.micOn;
  let camOn = cfg.cameraOn;
  let audioChoice = cfg.audioDefault; // "computer" | "none"
  let stage = "prejoin";  // prejoin | joining | lobby | call | out
  let mix = null;         // {ctx, dest}: the call's one mixed stream
  const name = $('[data-tid="prejoin-display-name-input"]');
  const join = $('[data-tid="prejoin-join-button"]');

  // ---- media ------------------------------------------------------------------------------------------
  async function openMic() {
    mic = await ReplicaRoom.openMic(cfg.audioProcessing);
    if (!mic) micOn = false;
  }

  function render() {
    const toggle = $('[data-tid="toggle-mute"]');
    toggle.checked = micOn;
    toggle.setAttribute("aria-checked", String(micOn));
    toggle.title = micOn ? "Mute mic" : "Unmute mic";
    const video = $('[data-tid="toggle-video"]');
    video.checked = camOn;
    video.setAttribute("aria-checked", String(camOn));
    video.title = camOn ? "Turn camera off" : "Turn camera on";
    show($("#camera-off"), !camOn);
    for (const radio of document.querySelectorAll('input[name="prejoin-audio"]')) {
      radio.checked = radio.value === audioChoice;
      radio.setAttribute("aria-checked", String(radio.checked));
    }
    show($("#computer-audio-options"), audioChoice === "computer");
    const micButton = $("#microphone-button");
    const live = audioChoice === "computer" && micOn && !!mic;
    const label = live ? "Mute mic" : "Unmute mic";
    micButton.title = label;
    micButton.setAttribute("aria-label", label);
    micButton.dataset.state = live ? "mic" : "mic-off";
    micButton.textContent = live ? "Mic" : "Mic off";
    const camButton = $("#video-button");
    const camLabel = camOn ? "Turn camera off" : "Turn camera on";
    camButton.title = camLabel;
    camButton.setAttribute("aria-label", camLabel);
    camButton.textContent = camOn ? "Camera" : "Camera off";
    if (mic) mic.getAudioTracks().forEach((t) => { t.enabled = live; });
  }

  function report() {
    if (room) room.send({ type: "media", audio: audioChoice === "computer" && micOn && !!mic, video: camOn });
  }

  async function setMic(on) {
    micOn = on;
    if (micOn && !mic && audioChoice === "computer") await openMic();
    render();
    report();
  }
  const toggleCam = () => { camOn = !camOn; render(); report(); };

  $('[data-tid="toggle-mute"]').addEventListener("change", () => setMic(!micOn));
  $('[data-tid="toggle-video"]').addEventListener("change", toggleCam);
  $("#microphone-button").addEventListener("click", () => setMic(!micOn));
  $("#video-button").addEventListener("click", toggleCam);
  for (const radio of document.querySelectorAll('input[name="prejoin-audio"]')) {
    radio.addEventListener("change", () => { if (radio.checked) { audioChoice = radio.value; render(); } });
  }
  // Ctrl+Shift+M toggles the microphone in the call, as in Teams.
  document.addEventListener("keydown", (e) => {
    if (stage === "call" && e.ctrlKey && e.shiftKey && (e.key === "M" || e.key === "m")) {
      e.preventDefault();
      setMic(!micOn);
    }
  });

  // ---- modals -----------------------------------------------------------------------------------------
  function modal(sel, buttons) {
    const el = $(sel);
    show(el);
    show($("#scrim"));
    return new Promise((done) => {
      for (const [id, value] of Object.entries(buttons)) {
        $(id).onclick = () => { show(el, false); show($("#scrim"), false); done(value); };
      }
    });
  }
  // Dismissing it only closes it: peers that click it still hear the call (inference: its effect on
  // the devices is not recorded anywhere).
  const avModal = () => modal("#av-modal", { "#av-modal-continue": true });
  const avModalAt = (when) => cfg.avModal === when || cfg.avModal === "both";

  // ---- pre-join and lobby ---------------------------------------------------------------------------------
  function prejoin() {
    only("#prejoin");
    stage = "prejoin";
    document.title = "Microsoft Teams";
    $("#meeting-title").textContent = cfg.title;
    const update = () => { if (stage === "prejoin") join.disabled = name.value.trim() === ""; };
    name.addEventListener("input", update);
    update();
    join.addEventListener("click", joinNow);
    render();
  }

  async function joinNow() {
    if (stage !== "prejoin" || join.disabled) return;
    stage = "joining";
    // Until the modal is answered nothing happens, and "Join now" stays on the page.
    if (avModalAt("after")) await avModal();
    join.disabled = true;
    $("#prejoin-error").textContent = "";
    if (audioChoice === "computer" && !mix) startMix();
    const reply = await ReplicaRoom.join(cfg.room, { name: name.value.trim(), passcode: cfg.passcode, platform: "teams" }, onServer);
    room = reply.room || null;
    switch (reply.result) {
      case "admitted": await inCall(); return;
      case "waiting": lobby(cfg.lobbyText); return;
      case "host_absent": lobby(`Hi, ${name.value.trim()}. ${cfg.lobbyNotStarted}`); return;
      case "sign_in": message(cfg.signInText, "Sign in to join, or ask the organizer to let guests in.", { signIn: true }); return;
      case "captcha":
      case "bot_wall":
        message(cfg.captchaText, "Solve the puzzle to continue to the meeting.", { captcha: true });
        return;
      case "not_found": message(cfg.notFoundText, "Check the link and try again."); return;
      case "passcode_wrong":
        // A neutral wording (no peer records Teams' own).
        message("The meeting ID or passcode is incorrect", "Check the link and try again.");
        return;
      case "blocked": message("You can't join this meeting", ""); return;
      default: message("Something went wrong", reply.result);
    }
  }

  function lobby(text) {
    stage = "lobby";
    only("#prejoin");
    name.disabled = true;
    join.disabled = true;
    join.setAttribute("aria-disabled", "true");
    $("#lobby-text").textContent = text;
    show($("#lobby"));
    show($('[data-tid="prejoin-cancel-button"]'));
  }
  $('[data-tid="prejoin-cancel-button"]').addEventListener("click", () => leave());

  function onServer(msg) {
    if (stage === "out") return;
    if (msg.type === "admitted") inCall();
    else if (msg.type === "host_joined" && stage === "lobby") lobby(cfg.lobbyText);
    else if (msg.type === "denied") retry(cfg.denialText);
    else if (msg.type === "removed") retry(cfg.removedText);
    else if (msg.type === "lobby_timeout") retry(cfg.lobbyTimeoutText);
    else if (msg.type === "blocked") retry(cfg.denialText);
    else if (msg.type === "ended") message(cfg.endedText, "", { rejoin: false });
    else if (msg.type === "disconnected") message("You've lost your connection", "", { rejoin: true });
    else if (msg.type === "participants") roster(msg.names || []);
  }

  // ---- the call ---------------------------------------------------------------------------------------------
  // One AudioContext mixes every peer's track and plays the mix.
  function startMix() {
    const ctx = new AudioContext();
    ctx.resume().catch(() => {});
    mix = { ctx, dest: ctx.destination, sources: new Map() };
  }

  function onTrack(track, pid) {
    if (!mix) return;
    const old = mix.sources.get(pid);
    if (old) old.disconnect();
    const source = mix.ctx.createMediaStreamSource(new MediaStream([track]));
    source.connect(mix.dest);
    mix.sources.set(pid, source);
  }

  let timer = null;
  async function inCall() {
    if (stage === "call" || stage === "out") return;
    stage = "call";
    only("#call");
    show($("#lobby"), false);
    document.title = `${cfg.title} | Microsoft Teams`;
    $("#call-title").textContent = cfg.title;
    const started = Date.now();
    timer = setInterval(() => {
      const s = Math.floor((Date.now() - started) / 1000);
      $("#call-timer").textContent = `${String(Math.floor(s / 60)).padStart(2, "0")}:${String(s % 60).padStart(2, "0")}`;
    }, 1000);
    if (cfg.alerts) startAlerts();
    render();
    report();
    // "Don't use audio": the guest neither sends nor hears anything.
    if (audioChoice === "computer") {
      if (!mix) startMix();
      await room.startAudio(mic, { audioElements: "muted", onTrack, receiveVideo: false });
    }
  }

  let people = [];
  function roster(names) {
    people = names;
    $("#roster-count").textContent = String(names.length);
    $("#roster-button").setAttribute("aria-label", `People, ${names.length} participants`);
    $("#roster-heading").textContent = `In this meeting (${names.length})`;
    const tree = $("#roster-tree");
    tree.replaceChildren();
    const me = name.value.trim();
    let mine = false;
    for (const n of names) {
      const you = !mine && n === me;
      if (you) mine = true;
      const item = document.createElement("div");
      item.setAttribute("role", "treeitem");
      item.dataset.cid = "roster-participant";
      item.setAttribute("aria-label", you ? `${n} (You)` : n);
      item.textContent = you ? `${n} (You)` : n;
      tree.appendChild(item);
    }
    const stageEl = $("#stage");
    stageEl.replaceChildren();
    for (const n of names) {
      const tile = document.createElement("div");
      tile.className = "tile";
      tile.dataset.tid = "video-tile";
      const label = document.createElement("span");
      label.textContent = n;
      tile.appendChild(label);
      stageEl.appendChild(tile);
    }
  }
  $('[data-tid="roster-button"]').addEventListener("click", () => show($("#roster-panel"), $("#roster-panel").hidden));

  // Transient alerts: not an end.
  const ALERTS = [
    "Your network connection is unstable. Others may have trouble hearing you.",
    "A participant was removed from the meeting",
    "Recording has started",
  ];
  function startAlerts() {
    let n = 0;
    const box = $("#toasts");
    const tick = setInterval(() => {
      if (stage !== "call") { clearInterval(tick); return; }
      const toast = document.createElement("div");
      toast.setAttribute("role", "alert");
      toast.className = "toast";
      toast.textContent = ALERTS[n++ % ALERTS.length];
      box.appendChild(toast);
      setTimeout(() => toast.remove(), cfg.alertMs);
    }, cfg.alertEveryMs);
  }

  // ---- leaving and the end screens ------------------------------------------------------------------------
  $("#hangup-button").addEventListener("click", async () => {
    if (stage !== "call") return;
    if (cfg.leaveConfirm && !(await modal("#leave-dialog", { "#leave-confirm": true, "#leave-cancel": false }))) return;
    leave();
  });

  function leave() {
    message(cfg.leftText, "", { rejoin: true });
  }

  function finish() {
    stage = "out";
    clearInterval(timer);
    if (room) room.close();
    room = null;
    if (mix) { mix.ctx.close().catch(() => {}); mix = null; }
    for (const d of document.querySelectorAll("[role=dialog], #scrim")) show(d, false);
    show($("#roster-panel"), false);
  }

  function retry(title) {
    finish();
    $("#calling-retry-screen-title").textContent = title;
    only("#retry");
    document.title = "Microsoft Teams";
  }
  $("#retry-rejoin").addEventListener("click", () => location.reload());
  $("#retry-cancel").addEventListener("click", () => message(cfg.leftText, "", { rejoin: true }));

  function message(title, text, opts = {}) {
    finish();
    $("#message-title").textContent = title;
    $("#message-text").textContent = text;
    show($("#message-signin"), !!opts.signIn);
    show($("#message-rejoin"), !!opts.rejoin);
    show($("#captcha-widget"), !!opts.captcha);
    only("#message");
    document.title = "Microsoft Teams";
  }
  $("#message-signin").addEventListener("click", () => { location.href = cfg.loginUrl; });
  $("#message-rejoin").addEventListener("click", () => location.reload());

  // ---- start ------------------------------------------------------------------------------------------------
  (async () => {
    if (audioChoice === "computer") await openMic();
    prejoin();
    if (avModalAt("before")) await avModal();
  })();
})();
