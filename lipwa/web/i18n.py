"""The payer's words in English, Swahili and French (checkout and receipt pages).

Operator and merchant pages are English. ``t(lang, key, **values)`` falls back to English for
a missing translation, and to the key itself for a missing key (a bug visible in tests).
"""

from __future__ import annotations

from collections.abc import Mapping

LANGUAGES: dict[str, str] = {"en": "English", "sw": "Kiswahili", "fr": "Français"}
DEFAULT = "en"

TEXT: dict[str, dict[str, str]] = {
    "pay_title": {"en": "Pay {merchant}", "sw": "Lipa {merchant}", "fr": "Payer {merchant}"},
    "amount": {"en": "Amount", "sw": "Kiasi", "fr": "Montant"},
    "amount_hint": {
        "en": "Amount in {currency}",
        "sw": "Kiasi kwa {currency}",
        "fr": "Montant en {currency}",
    },
    "phone": {
        "en": "Mobile money number",
        "sw": "Nambari ya pesa kwa simu",
        "fr": "Numéro mobile money",
    },
    "phone_hint": {
        "en": "For example {example}. We send a payment prompt to this phone.",
        "sw": "Kwa mfano {example}. Tutatuma ombi la malipo kwa simu hii.",
        "fr": "Par exemple {example}. Nous envoyons une demande de paiement à ce téléphone.",
    },
    "pay_button": {"en": "Pay {amount}", "sw": "Lipa {amount}", "fr": "Payer {amount}"},
    "pay_button_open": {"en": "Pay", "sw": "Lipa", "fr": "Payer"},
    "network_detected": {
        "en": "Network: {network}",
        "sw": "Mtandao: {network}",
        "fr": "Réseau : {network}",
    },
    "network_unsupported": {
        "en": "{network} numbers can't pay here yet",
        "sw": "Nambari za {network} haziwezi kulipa hapa bado",
        "fr": "Les numéros {network} ne peuvent pas encore payer ici",
    },
    "language": {"en": "Language", "sw": "Lugha", "fr": "Langue"},
    "test_mode": {
        "en": "Test mode: no real money moves.",
        "sw": "Hali ya majaribio: hakuna pesa halisi inayohamishwa.",
        "fr": "Mode test : aucun argent réel n'est déplacé.",
    },
    "secured": {
        "en": "You approve the payment with your PIN on your own phone.",
        "sw": "Unaidhinisha malipo kwa PIN yako kwenye simu yako.",
        "fr": "Vous validez le paiement avec votre code PIN sur votre téléphone.",
    },
    # progress
    "progress_title": {
        "en": "Check your phone",
        "sw": "Angalia simu yako",
        "fr": "Regardez votre téléphone",
    },
    "progress_sent": {
        "en": "We sent a {provider} prompt to {phone}. Enter your PIN to pay {amount}.",
        "sw": "Tumetuma ombi la {provider} kwa {phone}. Weka PIN yako kulipa {amount}.",
        "fr": "Nous avons envoyé une demande {provider} au {phone}. Saisissez votre code PIN "
        "pour payer {amount}.",
    },
    "progress_waiting": {
        "en": "Waiting for your approval…",
        "sw": "Tunasubiri uidhinishe…",
        "fr": "En attente de votre validation…",
    },
    "progress_checking": {
        "en": "Still checking with {provider}; this can take a minute.",
        "sw": "Bado tunathibitisha na {provider}; inaweza kuchukua dakika moja.",
        "fr": "Vérification en cours auprès de {provider} ; cela peut prendre une minute.",
    },
    "progress_refresh": {
        "en": "This page updates by itself.",
        "sw": "Ukurasa huu unajisasisha wenyewe.",
        "fr": "Cette page se met à jour toute seule.",
    },
    "progress_reload": {"en": "Refresh status", "sw": "Sasisha hali", "fr": "Actualiser"},
    "succeeded": {"en": "Payment received", "sw": "Malipo yamepokelewa", "fr": "Paiement reçu"},
    "failed_title": {
        "en": "Payment not completed",
        "sw": "Malipo hayajakamilika",
        "fr": "Paiement non effectué",
    },
    "retry": {"en": "Try again", "sw": "Jaribu tena", "fr": "Réessayer"},
    "other_number": {
        "en": "Use another number",
        "sw": "Tumia nambari nyingine",
        "fr": "Utiliser un autre numéro",
    },
    "no_money_taken": {
        "en": "No money was taken.",
        "sw": "Hakuna pesa iliyotolewa.",
        "fr": "Aucun montant n'a été débité.",
    },
    "view_receipt": {"en": "View receipt", "sw": "Tazama risiti", "fr": "Voir le reçu"},
    # receipt
    "receipt": {"en": "Receipt", "sw": "Risiti", "fr": "Reçu"},
    "paid_to": {"en": "Paid to", "sw": "Imelipwa kwa", "fr": "Payé à"},
    "paid_at": {"en": "Date and time", "sw": "Tarehe na saa", "fr": "Date et heure"},
    "receipt_no": {
        "en": "{provider} receipt number",
        "sw": "Nambari ya risiti ya {provider}",
        "fr": "Numéro de reçu {provider}",
    },
    "paid_from": {"en": "Paid from", "sw": "Imelipwa kutoka", "fr": "Payé depuis"},
    "reference": {"en": "Reference", "sw": "Kumbukumbu", "fr": "Référence"},
    "description": {"en": "For", "sw": "Kwa ajili ya", "fr": "Objet"},
    "print": {"en": "Print receipt", "sw": "Chapisha risiti", "fr": "Imprimer le reçu"},
    "receipt_pending": {
        "en": "This payment is not complete, so there is no receipt yet.",
        "sw": "Malipo haya hayajakamilika, kwa hivyo hakuna risiti bado.",
        "fr": "Ce paiement n'est pas terminé : pas encore de reçu.",
    },
    # link states
    "link_missing": {
        "en": "This payment link does not exist.",
        "sw": "Kiungo hiki cha malipo hakipo.",
        "fr": "Ce lien de paiement n'existe pas.",
    },
    "link_expired": {
        "en": "This payment link has expired. Ask {merchant} for a new one.",
        "sw": "Kiungo hiki cha malipo kimeisha muda. Omba {merchant} kiungo kipya.",
        "fr": "Ce lien de paiement a expiré. Demandez-en un nouveau à {merchant}.",
    },
    "link_used": {
        "en": "This payment link has already been paid.",
        "sw": "Kiungo hiki cha malipo tayari kimelipwa.",
        "fr": "Ce lien de paiement a déjà été payé.",
    },
    "link_disabled": {
        "en": "This payment link is no longer active.",
        "sw": "Kiungo hiki cha malipo hakitumiki tena.",
        "fr": "Ce lien de paiement n'est plus actif.",
    },
    "link_busy": {
        "en": "A payment through this link is in progress. Try again in a minute.",
        "sw": "Malipo kupitia kiungo hiki yanaendelea. Jaribu tena baada ya dakika moja.",
        "fr": "Un paiement via ce lien est en cours. Réessayez dans une minute.",
    },
    # refusals before a prompt is sent
    "err_phone": {
        "en": "Check the number: {detail}",
        "sw": "Hakiki nambari: {detail}",
        "fr": "Vérifiez le numéro : {detail}",
    },
    "err_phone_short": {
        "en": "Check the number and try again.",
        "sw": "Hakiki nambari kisha ujaribu tena.",
        "fr": "Vérifiez le numéro et réessayez.",
    },
    "err_network": {
        "en": "{merchant} can't take payments from this number's network. Try another number.",
        "sw": "{merchant} haiwezi kupokea malipo kutoka mtandao wa nambari hii. Jaribu nambari "
        "nyingine.",
        "fr": "{merchant} ne peut pas recevoir de paiements depuis le réseau de ce numéro. "
        "Essayez un autre numéro.",
    },
    "err_amount": {
        "en": "Check the amount: {detail}",
        "sw": "Hakiki kiasi: {detail}",
        "fr": "Vérifiez le montant : {detail}",
    },
    "err_paused": {
        "en": "Payments to {merchant} are paused right now. Nothing was charged. Please try "
        "again later.",
        "sw": "Malipo kwa {merchant} yamesitishwa kwa sasa. Hakuna kilichotozwa. Tafadhali "
        "jaribu tena baadaye.",
        "fr": "Les paiements à {merchant} sont suspendus pour le moment. Rien n'a été débité. "
        "Réessayez plus tard.",
    },
    "err_wait": {
        "en": "Please wait a minute before trying again.",
        "sw": "Tafadhali subiri dakika moja kabla ya kujaribu tena.",
        "fr": "Merci de patienter une minute avant de réessayer.",
    },
    "err_wait_seconds": {
        "en": "Please wait {seconds} seconds before trying again. Nothing was charged.",
        "sw": "Tafadhali subiri sekunde {seconds} kabla ya kujaribu tena. Hakuna kilichotozwa.",
        "fr": "Merci d'attendre {seconds} secondes avant de réessayer. Rien n'a été débité.",
    },
    "err_duplicate": {
        "en": "This phone was just asked for the same payment. Check your phone or your "
        "messages before paying again.",
        "sw": "Simu hii imeombwa malipo hayo hayo hivi punde. Angalia simu au ujumbe wako kabla "
        "ya kulipa tena.",
        "fr": "Ce téléphone vient de recevoir la même demande. Vérifiez votre téléphone ou vos "
        "messages avant de payer à nouveau.",
    },
    "err_expired_form": {
        "en": "The page was open too long. Please submit again.",
        "sw": "Ukurasa ulikaa wazi muda mrefu. Tafadhali tuma tena.",
        "fr": "La page est restée ouverte trop longtemps. Merci de valider à nouveau.",
    },
    "err_generic": {
        "en": "Something went wrong on our side. Nothing was charged. Please try again.",
        "sw": "Hitilafu imetokea upande wetu. Hakuna kilichotozwa. Tafadhali jaribu tena.",
        "fr": "Une erreur est survenue de notre côté. Rien n'a été débité. Réessayez.",
    },
}

# Plain-language outcomes by failure code (lipwa.domain.states.FAILURE_CODES).
OUTCOMES: dict[str, dict[str, str]] = {
    "payer_declined": {
        "en": "You cancelled on your phone.",
        "sw": "Umeghairi kwenye simu yako.",
        "fr": "Vous avez annulé sur votre téléphone.",
    },
    "insufficient_funds": {
        "en": "Not enough balance.",
        "sw": "Salio halitoshi.",
        "fr": "Solde insuffisant.",
    },
    "payer_unreachable": {
        "en": "We couldn't reach your phone, or the prompt timed out.",
        "sw": "Hatukuweza kufikia simu yako, au muda wa ombi uliisha.",
        "fr": "Impossible de joindre votre téléphone, ou la demande a expiré.",
    },
    "wrong_pin": {
        "en": "The PIN was wrong or is locked.",
        "sw": "PIN haikuwa sahihi au imefungwa.",
        "fr": "Le code PIN était incorrect ou est bloqué.",
    },
    "payer_not_found": {
        "en": "This number isn't registered for mobile money.",
        "sw": "Nambari hii haijasajiliwa kwa pesa kwa simu.",
        "fr": "Ce numéro n'est pas inscrit au mobile money.",
    },
    "expired": {
        "en": "The request expired before you approved it.",
        "sw": "Ombi liliisha muda kabla hujaidhinisha.",
        "fr": "La demande a expiré avant votre validation.",
    },
    "timeout": {
        "en": "We got no answer in time.",
        "sw": "Hatukupata jibu kwa wakati.",
        "fr": "Aucune réponse n'est arrivée à temps.",
    },
    "subscriber_busy": {
        "en": "Another payment prompt was already open on your phone. Wait a minute, then try "
        "again.",
        "sw": "Ombi jingine la malipo lilikuwa wazi kwenye simu yako. Subiri dakika moja, kisha "
        "ujaribu tena.",
        "fr": "Une autre demande de paiement était déjà ouverte sur votre téléphone. Attendez "
        "une minute, puis réessayez.",
    },
    "limit_exceeded": {
        "en": "A transaction limit was reached.",
        "sw": "Kikomo cha muamala kimefikiwa.",
        "fr": "Une limite de transaction a été atteinte.",
    },
    "duplicate_transaction": {
        "en": "The same payment was just made. Wait two minutes before trying again.",
        "sw": "Malipo hayo hayo yamefanyika hivi punde. Subiri dakika mbili kabla ya kujaribu "
        "tena.",
        "fr": "Le même paiement vient d'être fait. Attendez deux minutes avant de réessayer.",
    },
    "provider_unavailable": {
        "en": "The mobile money service is busy. Try again in a few minutes.",
        "sw": "Huduma ya pesa kwa simu ina shughuli nyingi. Jaribu tena baada ya dakika chache.",
        "fr": "Le service mobile money est saturé. Réessayez dans quelques minutes.",
    },
    "_default": {
        "en": "The payment didn't go through.",
        "sw": "Malipo hayakufanikiwa.",
        "fr": "Le paiement n'a pas abouti.",
    },
}

NETWORKS: dict[str, str] = {
    "safaricom": "Safaricom M-Pesa",
    "airtel_ke": "Airtel Kenya",
    "telkom_ke": "Telkom Kenya",
    "mtn_rw": "MTN MoMo Rwanda",
    "airtel_rw": "Airtel Rwanda",
    "mtn_ug": "MTN MoMo Uganda",
    "airtel_ug": "Airtel Uganda",
    "mtn_sandbox": "MTN MoMo (sandbox)",
    "unknown": "?",
}

PHONE_EXAMPLES = {"KES": "0712 345 678", "RWF": "0788 123 456", "UGX": "0772 123 456"}


def choose(query: str | None, cookie: str | None, accept: str | None) -> str:
    """The page language: ?lang=, then the cookie, then Accept-Language, then English."""
    for candidate in (query, cookie):
        if candidate in LANGUAGES:
            return candidate
    for part in (accept or "").split(","):
        code = part.split(";")[0].strip().lower()[:2]
        if code in LANGUAGES:
            return code
    return DEFAULT


def t(lang: str, key: str, **values: object) -> str:
    entry: Mapping[str, str] | None = TEXT.get(key)
    if entry is None:
        return key
    text = entry.get(lang) or entry[DEFAULT]
    return text.format(**values) if values else text


def outcome(lang: str, failure_code: str | None) -> str:
    entry = OUTCOMES.get(failure_code or "", OUTCOMES["_default"])
    return entry.get(lang) or entry[DEFAULT]
