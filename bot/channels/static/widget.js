/*
 * SchoolGuide chat widget: parents (website) and pupils (the kid-safe page). No dependencies, no build step.
 *
 * Embed it on a school's website with one tag:
 *
 *   <script src="https://bot.school.example/webhooks/website/widget.js" data-school="lunsford" defer></script>
 *
 * Settings come from the script tag's data- attributes (never from inline script, so a strict
 * Content-Security-Policy works):
 *   data-school   the school's slug in the clause base (the server checks it and falls back to its default)
 *   data-mount    id of an element to show the chat in, always open; without it a launcher button is added
 *                 at the bottom right of the page that opens and closes the chat
 *   data-variant  "pupil" on the pupil page: bigger text, simple words, "Talk to a grown-up", "Leave quickly"
 *
 * Safety rules this file keeps:
 *   - Every piece of text (what people type, what the bot says) goes into the page with textContent.
 *     Nothing is ever parsed as HTML: there is no innerHTML, insertAdjacentHTML or document.write here.
 *   - The only requests are to this widget's own server (its "conversation" and "webhook", next to this
 *     file); no cookies, no referrer, no third parties, no tracking.
 *   - The only thing stored is the conversation id the server issued (random, signed by the server so a page
 *     cannot pick someone else's), in sessionStorage: it ends when the tab closes.
 */
(function () {
  "use strict";

  // ---- Settings from the <script> tag ---------------------------------------------------------------

  var script = document.currentScript || document.querySelector("script[src*='widget.js']");
  if (!script) {
    return;
  }
  var base = new URL(".", script.src); // e.g. https://bot.school.example/webhooks/website/
  var variant = script.getAttribute("data-variant") === "pupil" ? "pupil" : "parent";
  var config = {
    school: script.getAttribute("data-school") || "",
    mountId: script.getAttribute("data-mount") || "",
    webhook: new URL("webhook", base).href,
    conversation: new URL("conversation", base).href,
    stylesheet: new URL("widget.css", base).href,
    storageKey: "schoolguide-sender-" + variant,
  };

  // Everything the widget itself says. Pupil text is short and plain (reading age about 9).
  var TEXT = {
    parent: {
      title: "Questions about our social media policy",
      intro:
        "Hello! Ask me about the school's social media policy, for example: " +
        "“Can staff follow pupils on Instagram?” Each answer shows the part of the policy it comes from.",
      notice:
        "The school keeps this conversation. If something you write suggests a child may not be safe, " +
        "it is passed to the school's Designated Safeguarding Lead.",
      label: "Your question",
      send: "Send",
      you: "You said:",
      bot: "SchoolGuide said:",
      waiting: "SchoolGuide is writing an answer…",
      empty: "Please type a question first.",
      quotes: function (n) {
        return n === 1 ? "Show the policy wording" : "Show the policy wording (" + n + " parts)";
      },
      noReply: "Sorry, I don't have an answer for that. Please try asking in another way.",
      failed: "Sorry, the message could not be sent. Please try again in a moment.",
      launcher: "Ask about our social media policy",
      close: "Close",
      closeLabel: "Close the chat",
    },
    pupil: {
      title: "Chat",
      intro: "Hi! Ask me about apps, staying safe online or our school's rules.",
      notice: "",
      label: "Type your question",
      send: "Send",
      you: "You said:",
      bot: "Helper said:",
      waiting: "Writing…",
      empty: "Type a question first.",
      quotes: null, // pupils get the short "This is from our school's rules" line, not long quotes
      noReply: "Sorry, I don't know that one. Can you ask in another way?",
      failed:
        "Sorry, that did not send. Please try again. " +
        "If you are not safe, call Childline on 0800 1111, or 999 in an emergency.",
      grownUp: "Talk to a grown-up",
      launcher: "Chat",
      close: "Close",
      closeLabel: "Close the chat",
    },
  }[variant];

  var GROWN_UP_MESSAGE = "/disclose"; // Rasa's intent syntax: goes straight to the disclosure route
  var MAX_MESSAGE_CHARS = 2000;
  var LEAVE_PRESSES = 3; // Esc pressed this many times...
  var LEAVE_WINDOW_MS = 2000; // ...within this long leaves the pupil page

  // ---- Small DOM helpers (text only, never HTML) -----------------------------------------------------

  var uid = Math.random().toString(36).slice(2, 8);

  function el(tag, className, text) {
    var node = document.createElement(tag);
    if (className) {
      node.className = className;
    }
    if (text !== undefined && text !== null) {
      node.textContent = String(text);
    }
    return node;
  }

  function visuallyHidden(text) {
    return el("span", "sg-visually-hidden", text);
  }

  // ---- The conversation id (sessionStorage only: per tab, gone when the tab closes) -----------------
  // The server issues it (POST "conversation") and signs it; the widget only keeps it and sends it back.

  var memorySender = null;

  function storedId() {
    try {
      return window.sessionStorage.getItem(config.storageKey) || memorySender;
    } catch (e) {
      return memorySender; // storage switched off: the id lives in memory for this page only
    }
  }

  function keepId(id) {
    memorySender = id;
    try {
      if (id) {
        window.sessionStorage.setItem(config.storageKey, id);
      } else {
        window.sessionStorage.removeItem(config.storageKey);
      }
    } catch (e) {
      // storage switched off: memorySender holds it
    }
  }

  function request(url, body) {
    return window.fetch(url, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(body),
      credentials: "omit",
      referrerPolicy: "no-referrer",
      cache: "no-store",
    });
  }

  function conversationId() {
    var id = storedId();
    if (id) {
      return Promise.resolve(id);
    }
    return request(config.conversation, {})
      .then(function (response) {
        if (!response.ok) {
          throw new Error("HTTP " + response.status);
        }
        return response.json();
      })
      .then(function (data) {
        if (!data || typeof data.sender !== "string") {
          throw new Error("unexpected conversation id");
        }
        keepId(data.sender);
        return data.sender;
      });
  }

  // ---- Building the widget ----------------------------------------------------------------------------

  function addStylesheet() {
    var links = document.querySelectorAll("link[rel='stylesheet']");
    for (var i = 0; i < links.length; i++) {
      if (links[i].href === config.stylesheet) {
        return;
      }
    }
    var link = document.createElement("link");
    link.rel = "stylesheet";
    link.href = config.stylesheet;
    document.head.appendChild(link);
  }

  function build() {
    var titleId = "sg-title-" + uid;
    var inputId = "sg-input-" + uid;

    var widget = el("section", "sg-widget sg-widget--" + variant);
    widget.setAttribute("aria-labelledby", titleId);

    var header = el("div", "sg-header");
    var title = el("h2", "sg-title", TEXT.title);
    title.id = titleId;
    header.appendChild(title);
    widget.appendChild(header);

    if (TEXT.notice) {
      widget.appendChild(el("p", "sg-notice-small", TEXT.notice));
    }

    var grownUp = null;
    if (variant === "pupil") {
      grownUp = el("button", "sg-button sg-grown-up", TEXT.grownUp);
      grownUp.type = "button";
      widget.appendChild(grownUp);
    }

    // The conversation: a polite live region, so screen readers read new messages without interrupting.
    // It can be scrolled with the keyboard, so it is focusable.
    var log = el("div", "sg-log");
    log.setAttribute("role", "log");
    log.setAttribute("aria-live", "polite");
    log.setAttribute("aria-label", "Conversation");
    log.tabIndex = 0;
    widget.appendChild(log);

    var status = el("p", "sg-status");
    status.setAttribute("role", "status");
    widget.appendChild(status);

    var form = el("form", "sg-form");
    form.noValidate = true;
    var label = el("label", "sg-label", TEXT.label);
    label.htmlFor = inputId;
    var row = el("div", "sg-row");
    var input = el("input", "sg-input");
    input.id = inputId;
    input.type = "text";
    input.autocomplete = "off";
    input.maxLength = MAX_MESSAGE_CHARS;
    input.setAttribute("enterkeyhint", "send");
    var sendButton = el("button", "sg-button sg-send", TEXT.send);
    sendButton.type = "submit";
    row.appendChild(input);
    row.appendChild(sendButton);
    form.appendChild(label);
    form.appendChild(row);
    widget.appendChild(form);

    return { widget: widget, header: header, log: log, status: status, form: form, input: input, grownUp: grownUp };
  }

  // ---- Showing messages ----------------------------------------------------------------------------------

  function scrollToEnd(ui) {
    ui.log.scrollTop = ui.log.scrollHeight;
  }

  function addBubble(ui, who, text) {
    var item = el("div", "sg-msg sg-msg--" + who);
    if (who === "bot" && /^Source: /.test(text)) {
      item.className += " sg-msg--source"; // the citation line under an answer: styled as a citation
    }
    item.appendChild(visuallyHidden(who === "user" ? TEXT.you : TEXT.bot));
    item.appendChild(el("p", "sg-msg__text", text));
    ui.log.appendChild(item);
    scrollToEnd(ui);
    return item;
  }

  // The citation under an answer: each clause's section and its words, folded away until asked for.
  function addCitation(ui, payload) {
    var clauses = Array.isArray(payload.clauses) ? payload.clauses : [];
    if (!TEXT.quotes || clauses.length === 0) {
      return;
    }
    var details = el("details", "sg-cite");
    details.appendChild(el("summary", "sg-cite__summary", TEXT.quotes(clauses.length)));
    details.addEventListener("toggle", function () {
      if (details.open) {
        details.scrollIntoView({ block: "nearest" }); // show the words just opened
      }
    });
    clauses.forEach(function (clause) {
      var part = el("div", "sg-cite__clause");
      part.appendChild(el("p", "sg-cite__section", clause.section));
      part.appendChild(el("blockquote", "sg-cite__quote", clause.quote));
      details.appendChild(part);
    });
    var item = el("div", "sg-msg sg-msg--bot sg-msg--cite");
    item.appendChild(details);
    ui.log.appendChild(item);
    scrollToEnd(ui);
  }

  // Choices the bot offers (e.g. "Did you mean one of these?"). Choosing one sends its payload and shows
  // its title as what the person said; the other choices are then switched off.
  function addButtons(ui, buttons, send) {
    var group = el("div", "sg-choices");
    group.setAttribute("role", "group");
    group.setAttribute("aria-label", "Choices");
    buttons.forEach(function (choice) {
      if (!choice || typeof choice.title !== "string" || typeof choice.payload !== "string") {
        return;
      }
      var button = el("button", "sg-button sg-choice", choice.title);
      button.type = "button";
      button.addEventListener("click", function () {
        Array.prototype.forEach.call(group.querySelectorAll("button"), function (b) {
          b.disabled = true;
        });
        send(choice.payload, choice.title);
        ui.input.focus();
      });
      group.appendChild(button);
    });
    ui.log.appendChild(group);
    scrollToEnd(ui);
  }

  function renderReplies(ui, messages, send) {
    if (!Array.isArray(messages)) {
      throw new Error("unexpected reply");
    }
    var shown = 0;
    messages.forEach(function (message) {
      if (!message || typeof message !== "object") {
        return;
      }
      if (typeof message.text === "string" && message.text.trim()) {
        addBubble(ui, "bot", message.text);
        shown++;
      }
      if (Array.isArray(message.buttons) && message.buttons.length) {
        addButtons(ui, message.buttons, send);
        shown++;
      }
      var custom = message.custom;
      if (custom && typeof custom === "object" && custom.type === "policy_answer") {
        addCitation(ui, custom);
      }
    });
    if (shown === 0) {
      addBubble(ui, "bot", TEXT.noReply);
    }
  }

  // ---- Talking to the server -------------------------------------------------------------------------

  // Replies the server sent with a refusal: a request it could not take (e.g. its metadata was too deep)
  // may still carry a safe reply in "messages", which must be shown rather than a generic error.
  function repliesIn(problem) {
    if (!problem || typeof problem !== "object" || !Array.isArray(problem.messages)) {
      return null;
    }
    var shown = problem.messages.some(function (message) {
      return message && typeof message === "object" && typeof message.text === "string" && message.text.trim();
    });
    return shown ? problem.messages : null;
  }

  // Sends one message. If the server no longer knows the id (its key changed), it says so with
  // code "new_conversation": the widget then gets a new id and sends the same message once more.
  // Any other refusal shows the replies in its body, if it has some, and otherwise the "failed" text.
  function post(text, retried) {
    return conversationId().then(function (id) {
      return request(config.webhook, { sender: id, message: text, metadata: { school: config.school } }).then(
        function (response) {
          if (response.ok) {
            return response.json();
          }
          return response
            .json()
            .catch(function () {
              return null; // not JSON: a plain error
            })
            .then(function (problem) {
              var replies = repliesIn(problem);
              if (replies) {
                return replies;
              }
              if (response.status === 400 && !retried && problem && problem.code === "new_conversation") {
                keepId(null);
                return post(text, true);
              }
              throw new Error("HTTP " + response.status);
            });
        }
      );
    });
  }

  function start(mount) {
    addStylesheet();
    var ui = build();
    var queue = Promise.resolve(); // messages are sent one after another, in order

    function send(text, shownAs) {
      addBubble(ui, "user", shownAs || text);
      queue = queue.then(function () {
        ui.status.textContent = TEXT.waiting;
        return post(text)
          .then(function (messages) {
            renderReplies(ui, messages, send);
          })
          .catch(function () {
            addBubble(ui, "bot", TEXT.failed);
          })
          .then(function () {
            ui.status.textContent = "";
          });
      });
    }

    ui.form.addEventListener("submit", function (event) {
      event.preventDefault();
      var text = ui.input.value;
      if (!text.trim()) {
        ui.status.textContent = TEXT.empty;
        ui.input.focus();
        return;
      }
      ui.input.value = "";
      send(text);
      ui.input.focus();
    });

    if (ui.grownUp) {
      ui.grownUp.addEventListener("click", function () {
        send(GROWN_UP_MESSAGE, TEXT.grownUp);
        ui.input.focus();
      });
    }

    addBubble(ui, "bot", TEXT.intro);

    if (mount) {
      mount.appendChild(ui.widget);
    } else {
      addLauncher(ui);
    }
    if (variant === "pupil") {
      setUpLeaveQuickly(ui);
    }
  }

  // ---- Launcher (when the page gives no element to show the chat in) -------------------------------

  function addLauncher(ui) {
    var root = el("div", "sg-root sg-root--floating");
    var panelId = "sg-panel-" + uid;
    var launcher = el("button", "sg-button sg-launcher", TEXT.launcher);
    launcher.type = "button";
    launcher.setAttribute("aria-expanded", "false");
    launcher.setAttribute("aria-controls", panelId);

    var close = el("button", "sg-button sg-close", TEXT.close);
    close.type = "button";
    close.setAttribute("aria-label", TEXT.closeLabel);
    ui.header.appendChild(close);

    ui.widget.id = panelId;
    ui.widget.hidden = true;

    function setOpen(open) {
      ui.widget.hidden = !open;
      // widget.css hides the launcher on phones while the chat is open, so the chat can use the whole screen.
      root.classList.toggle("sg-root--open", open);
      launcher.setAttribute("aria-expanded", open ? "true" : "false");
      if (open) {
        ui.input.focus();
        scrollToEnd(ui);
      } else {
        launcher.focus();
      }
    }

    launcher.addEventListener("click", function () {
      setOpen(ui.widget.hidden);
    });
    close.addEventListener("click", function () {
      setOpen(false);
    });
    ui.widget.addEventListener("keydown", function (event) {
      if (event.key === "Escape") {
        setOpen(false);
      }
    });

    root.appendChild(ui.widget);
    root.appendChild(launcher);
    document.body.appendChild(root);
  }

  // ---- Leave quickly (pupil page) ----------------------------------------------------------------------

  function setUpLeaveQuickly(ui) {
    var link = document.getElementById("sg-leave");
    if (!link) {
      return;
    }

    function leave() {
      memorySender = null;
      try {
        window.sessionStorage.clear();
      } catch (e) {
        // storage already unavailable: nothing to clear
      }
      ui.log.textContent = "";
      ui.input.value = "";
      document.title = "";
      // replace(): the back button does not come back to this page.
      window.location.replace(link.href);
    }

    link.addEventListener("click", function (event) {
      event.preventDefault();
      leave();
    });

    var presses = [];
    document.addEventListener("keydown", function (event) {
      if (event.key !== "Escape" || event.repeat) {
        return;
      }
      var now = Date.now();
      presses = presses.filter(function (time) {
        return now - time < LEAVE_WINDOW_MS;
      });
      presses.push(now);
      if (presses.length >= LEAVE_PRESSES) {
        leave();
      }
    });
  }

  // ---- Go -------------------------------------------------------------------------------------------------

  function init() {
    var mount = config.mountId ? document.getElementById(config.mountId) : null;
    start(mount);
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", init);
  } else {
    init();
  }
})();
