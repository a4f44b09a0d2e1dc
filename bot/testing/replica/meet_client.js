// Google Meet guest client replica: "Getting ready", pre-join (name, toggles, Ask to join / Join now),
// lobby, call (auto-hiding control bar, tiles, People), notices, driven by the replica server over its
// room connection (`ReplicaRoom`, shared with the Zoom replica).
"use strict";

(() => {
  const cfg = JSON.parse(document.getElementById("meet-config").textContent);
  const $ = (s) => document.querySelector(s);
  const show = (el, on = true) => { el.hidden = !on; };
  const screens = ["#getting-ready", "#prejoin", "#unknown-screen", "#call", "#notice"];
  const only = (sel) => screens.forEach((s) => show($(s), s === sel));
  const panel = (sel) => ["#join-panel", "#lobby-panel", "#host-wait-panel"].forEach((s) => show($(s), s === sel));

  let room = null;       // the replica room connection, once the join button is clicked
  let mic = null;        // the microphone stream (null: not allowed)
  let micOn = cfg.micOn;
  let camOn = cfg.cameraOn;
  let stage = "prejoin"; // prejoin | joining | lobby | host_wait | call | out
  let audioStarted = false;
  let people = { count: 0, names: [], pids: [] };
  const name = $('input[aria-label="Your name"]');
  const join = $("#join-button");

  // ---- media ------------------------------------------------------------------------------------------
  async function openMic() {
    mic = await ReplicaRoom.openMic(cfg.audioProcessing);
    if (!mic) micOn = false;
    applyMic();
  }

  function applyMic() {
    if (mic) mic.getAudioTracks().forEach((t) => { t.enabled = micOn; });
    const label = micOn ? "Turn off microphone" : "Turn on microphone";
    for (const el of [$("#mic-toggle"), $("#call-mic")]) {
      el.setAttribute("aria-label", label);
      el.dataset.isMuted = String(!micOn);
      el.dataset.tooltip = label + " (ctrl + d)";
    }
  }

  function applyCam() {
    const label = camOn ? "Turn off camera" : "Turn on camera";
    for (const el of [$("#cam-toggle"), $("#call-cam")]) {
      el.setAttribute("aria-label", label);
      el.dataset.isMuted = String(!camOn);
      el.dataset.tooltip = label + " (ctrl + e)";
    }
    show($(".camera-off-text"), !camOn);
  }

  async function toggleMic() {
    micOn = !micOn;
    if (micOn && !mic) await openMic();
    applyMic();
  }
  const toggleCam = () => { camOn = !camOn; applyCam(); };
  $("#mic-toggle").addEventListener("click", toggleMic);
  $("#call-mic").addEventListener("click", toggleMic);
  $("#cam-toggle").addEventListener("click", toggleCam);
  $("#call-cam").addEventListener("click", toggleCam);

  // ---- pre-join ---------------------------------------------------------------------------------------
  function dialog(sel, buttons) {
    const el = $(sel);
    show(el);
    show($("#scrim"));  // a modal: the page below takes no clicks until it is answered
    return new Promise((done) => {
      for (const [id, value] of Object.entries(buttons)) {
        $(id).onclick = () => { show(el, false); show($("#scrim"), false); done(value); };
      }
    });
  }

  // A card that is not a dialog, on a scrim that takes every click meant for the page until dismissed.
  function banner(text, button) {
    $("#banner-text").textContent = text;
    $("#banner-button").textContent = button;
    show($("#banner"));
    show($("#banner-scrim"));
    return new Promise((done) => {
      $("#banner-button").onclick = () => { show($("#banner"), false); show($("#banner-scrim"), false); done(); };
    });
  }
  const bannerAt = (where) => cfg.banner === where || cfg.banner === "both";

  function prejoin() {
    only("#prejoin");
    panel("#join-panel");
    $("#lobby-text").textContent = cfg.lobbyText;
    show($("#lobby-detail"), cfg.lobbyDetail);
    show($("#mystery-overlay"), cfg.mysteryOverlay);
    const others = cfg.inCall;
    $("#in-call-names").textContent = others.length === 0 ? "No one else is here"
      : others.length === 1 ? `${others[0]} is in this call` : `${others.join(", ")} are in this call`;
    // Meet offers "Join now" when the guest may enter directly, "Ask to join" when someone must admit.
    join.querySelector("span").textContent = cfg.askToJoin ? "Ask to join" : "Join now";
    if (cfg.account) signedIn(cfg.account);
    const update = () => {
      join.disabled = name.value.trim() === "";
      $(".self-name").textContent = name.value;
    };
    name.addEventListener("input", update);
    update();
    join.addEventListener("click", askToJoin);
  }

  // Signed in (the replica's SID cookie): no name field, the account's name; "Join now" when the account
  // may enter without asking, "Switch here" when it is already in the call on another device.
  function signedIn(account) {
    $(".name-row").hidden = true;
    name.value = account.name;
    const who = document.createElement("div");
    who.className = "account";
    who.textContent = `${account.name} (${account.email})`;
    $("#join-panel").insertBefore(who, $(".name-row"));
    join.querySelector("span").textContent = account.inCall ? "Switch here" : account.admitted ? "Join now"
      : cfg.askToJoin ? "Ask to join" : "Join now";
  }

  async function askToJoin() {
    if (join.disabled || stage !== "prejoin") return;
    stage = "joining";
    join.disabled = true;
    name.disabled = true;
    $("#join-error").textContent = "";
    if (cfg.unknownScreen) { only("#unknown-screen"); return; }
    const reply = await ReplicaRoom.join(cfg.code, { name: name.value.trim(), passcode: "", platform: "meet" }, onServer);
    room = reply.room || null;
    switch (reply.result) {
      case "admitted": inCall(); return;
      case "waiting": lobby(); return;
      case "host_absent": stage = "host_wait"; panel("#host-wait-panel"); $("#lobby-leave").hidden = false; return;
      case "blocked":
        notice(cfg.blockedText, "Return to the home screen to try again.", null);
        return;
      case "captcha": {
        const frame = $("#recaptcha");
        frame.src = frame.dataset.src;
        show($("#captcha-panel"));
        return;
      }
      case "not_found": location.reload(); return; // the server now renders "Check your meeting code"
      case "sign_in": location.reload(); return;   // ... or the sign-in page
      default:
        stage = "prejoin";
        name.disabled = false;
        join.disabled = false;
        $("#join-error").textContent = "Something went wrong. Try again.";
    }
  }

  // ---- lobby and call -----------------------------------------------------------------------------------
  function lobby() {
    if (stage === "call" || stage === "out") return;
    stage = "lobby";
    panel("#lobby-panel");
    show($("#lobby-leave"));
  }

  function onServer(msg) {
    if (stage === "out") return;
    if (msg.type === "admitted") inCall();
    else if (msg.type === "blocked") notice(cfg.blockedText, "Return to the home screen to try again.", null);
    else if (msg.type === "host_joined") { if (stage === "host_wait") lobby(); }
    else if (msg.type === "participants") setPeople(msg.count, msg.names || [], msg.pids || []);
    else if (msg.type === "denied") {
      // Meet now often just shows the page it shows after leaving.
      if (cfg.denial === "left") notice("You left the meeting", "", "Rejoin");
      else notice("You can’t join this call", "Someone in the call denied your request to join", "Ask to join again");
    } else if (msg.type === "lobby_timeout") {
      notice("You can’t join this call", "No one responded to your request to join the call", "Ask to join again");
    } else if (msg.type === "removed") notice("You’ve been removed from the meeting", "", "Rejoin");
    else if (msg.type === "ended") {
      if (cfg.endNavigatesTo) navigateAway(cfg.endNavigatesTo);
      else notice(cfg.endNotice, "", null);
    }
  }

  function inCall() {
    if (stage === "call" || stage === "out") return;
    stage = "call";
    history.replaceState(null, "", "/" + cfg.code);
    document.title = "Meet \u2013 " + cfg.code;
    only("#call");
    controlsAutoHide();
    renderPeople();
    if (bannerAt("call")) {
      setTimeout(() => { if (stage === "call") banner("Your meeting is safe. No one can join unless invited or admitted by the host.", "Got it"); }, 300);
    }
    if (cfg.recordingNotice) {
      // Media starts only once the guest consents, as Meet's recording notice requires.
      dialog("#recording-dialog", { "#recording-join": true, "#recording-leave": false }).then((ok) => {
        if (ok) startAudio(); else leaveCall();
      });
    } else {
      startAudio();
    }
  }

  async function startAudio() {
    if (audioStarted || stage !== "call") return;
    audioStarted = true;
    // Remote cameras go into their owners' tiles, as Meet's <video> elements do.
    await room.startAudio(mic, { onVideo: () => renderPeople() });
  }

  function setPeople(count, names, pids) {
    people = { count, names, pids };
    renderPeople();
  }

  // Where the count shows depends on the client version (cfg.people).
  function setupPeople() {
    const button = $("#people");
    if (cfg.people === "label") {
      button.removeAttribute("aria-haspopup");
      $("#people-count").remove();
    } else if (cfg.people === "avatars" || cfg.people === "tiles") {
      button.remove();
    }
  }

  function renderPeople() {
    const me = name.value.trim();
    const count = stage === "call" ? String(people.count) : "";
    if (cfg.people === "button") $("#people-count").textContent = count;
    if (cfg.people === "label" && $("#people")) $("#people").setAttribute("aria-label", count ? `People - ${count}` : "People");
    const avatars = $("#avatars");
    if (cfg.people === "avatars" && stage === "call") {
      show(avatars);
      avatars.dataset.avatarCount = count;
      avatars.querySelector(".avatars-more").textContent = count;
    }
    const tiles = $("#tiles");
    tiles.replaceChildren();
    const list = $("#people-list");
    list.replaceChildren();
    let mine = false;
    people.names.forEach((n, i) => {
      const you = !mine && n === me;
      if (you) mine = true;
      const tile = document.createElement("div");
      tile.className = "tile";
      tile.dataset.participantId = `spaces/${cfg.code}/devices/${i + 1}`;
      const label = document.createElement("span");
      label.className = "notranslate";
      label.textContent = n;
      tile.appendChild(label);
      const video = room && room.videos && room.videos.get(people.pids[i]);
      if (video) {
        tile.insertBefore(video, label);
        video.play().catch(() => {});
      }
      tiles.appendChild(tile);
      const item = document.createElement("div");
      item.setAttribute("role", "listitem");
      item.setAttribute("aria-label", n);
      item.textContent = n + (you ? " (You)" : "");
      list.appendChild(item);
    });
  }

  $("#people").addEventListener("click", () => show($("#people-panel"), $("#people-panel").hidden));
  setupPeople();

  // The control bar hides after a few seconds without pointer movement, as Meet's does.
  function controlsAutoHide() {
    const bar = $("#controls");
    // "remove": the hidden bar leaves the layout (and its buttons and count with it); "fade": it stays.
    const hidden = cfg.controlsHide === "remove" ? "autohidden-remove" : "autohidden";
    let timer = null;
    const wake = () => {
      bar.classList.remove(hidden);
      clearTimeout(timer);
      timer = setTimeout(() => bar.classList.add(hidden), cfg.controlsHideMs);
    };
    document.addEventListener("mousemove", wake);
    document.addEventListener("click", wake);
    wake();
  }

  // ---- leaving and notices --------------------------------------------------------------------------------
  function leaveCall() {
    if (stage === "out") return;
    notice("You left the meeting", "", "Rejoin");
  }
  $("#call-leave").addEventListener("click", leaveCall);
  $("#lobby-leave").addEventListener("click", leaveCall);

  // The call ends by the page going elsewhere, with no end text.
  function navigateAway(url) {
    stage = "out";
    if (room) room.close();
    location.href = url;
  }

  function notice(title, text, again) {
    stage = "out";
    if (room) room.close();
    for (const d of document.querySelectorAll("[role=dialog], #scrim, #banner, #banner-scrim")) show(d, false);
    history.replaceState(null, "", "/" + cfg.code);
    document.title = "Meet";
    $("#notice-title").textContent = title;
    $("#notice-text").textContent = text;
    const button = $("#again");
    show(button, !!again);
    button.textContent = again || "";
    only("#notice");
  }
  $("#home").addEventListener("click", () => { location.href = "/"; });
  $("#again").addEventListener("click", () => { location.href = "/" + cfg.code; });

  // ---- start ----------------------------------------------------------------------------------------------
  (async () => {
    applyMic();
    applyCam();
    const ready = new Promise((r) => setTimeout(r, cfg.gettingReadyMs));
    if (cfg.permissionDialog) {
      await ready;
      only("#prejoin");
      panel("#join-panel");
      const allowed = await dialog("#permission-dialog", { "#permission-allow": true, "#permission-skip": false });
      if (allowed) await openMic(); else { micOn = false; camOn = false; applyMic(); applyCam(); }
    } else {
      await Promise.all([ready, openMic()]);
    }
    prejoin();
    if (cfg.signInModal && !cfg.account) await dialog("#signin-modal", { "#signin-got-it": true });
    if (bannerAt("prejoin")) await banner("You can now present and use Companion mode from here.", "Dismiss");
  })();
})();
